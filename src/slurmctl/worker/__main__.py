from slurmctl.worker.entry import main

main()
