"""Example handler: word and character statistics over JSONL documents."""

from collections import Counter


def handle(record, ctx):
    text = record["text"]
    words = text.split()
    top = Counter(w.lower().strip(".,;:!?") for w in words).most_common(1)
    return {
        "doc_id": record["id"],
        "chars": len(text),
        "words": len(words),
        "top_word": top[0][0] if top else None,
    }
