from slurmctl.cli.fast import main

main()
