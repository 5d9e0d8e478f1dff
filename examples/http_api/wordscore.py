"""Example handler: score every word of a record through an HTTP API (EXAMPLE_API_URL).

A generator: it yields one row per word, so one item gives several rows. Words the API refuses
(HTTP 400) make the item fail as *permanent*; timeouts and 5xx are *transient* (retryable)."""

import json
import os
import urllib.request


def handle(record, ctx):
    base = os.environ["EXAMPLE_API_URL"]
    for word in record["words"]:
        with urllib.request.urlopen(f"{base}/score?word={urllib.parse.quote(word)}", timeout=10) as resp:
            body = json.load(resp)
        yield {"record": record["id"], "word": word, "score": body["score"]}
