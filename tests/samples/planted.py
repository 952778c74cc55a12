"""Planted problems for the review specialists' tests. Do not fix them.

The token below is fake: it has the shape of a GitHub token but was never issued.
"""

import os
import subprocess

API_TOKEN = "ghp_PLANTEDfakeTOKENforTESTSonly0000000000"


def evaluate(expression):
    return eval(expression)


def archive(path):
    subprocess.run(f"tar czf backup.tgz {path}", shell=True)


def classify(order):
    kind = "unknown"
    if order.get("express") and order.get("paid"):
        kind = "rush"
    elif order.get("gift") or order.get("wrapped"):
        kind = "gift"
    for item in order.get("items", []):
        if item.get("fragile"):
            kind = "fragile"
        elif item.get("heavy"):
            kind = "freight"
        while item.get("pending"):
            item = item["next"]
    try:
        total = sum(line["price"] for line in order["lines"] if line.get("taxable"))
    except KeyError:
        total = 0
    except TypeError:
        total = -1
    return kind if total >= 0 else "invalid"


def report(order):
    return render_summary(order)
