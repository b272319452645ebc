#!/usr/bin/env python3
"""A marketplace-sized moderation rules file (like benches' ModerationBench): 5 000 terms over
four rules, 30 regexes, link and contact rules; with --classifier, a classifier rule too."""
import json, random, sys

random.seed(7)
def word():
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(5, 12)))
rules = []
for r, action in enumerate(["flag", "bounce", "shadow", "flag"]):
    terms = [f"{word()} {word()}" if i % 3 == 0 else word() for i in range(1250)]
    rules.append({"id": f"terms-{r}", "action": action, "terms": terms})
rules.append({"id": "own", "action": "allow", "link_domains": ["marketplace.example"]})
patterns = []
for i in range(30):
    k = i % 5
    if k == 0: patterns.append(r"\bbc1[a-z0-9]{%d,%d}\b" % (20 + i % 7, 40 + i % 7))
    elif k == 1: patterns.append(r"\b\d{4}[- ]?\d{4}[- ]?\d{4}[- ]?\d{%d}\b" % (1 + i % 4))
    elif k == 2: patterns.append(r"\b%s\s*(?:dot|\.)\s*(?:com|net)\b" % word())
    elif k == 3: patterns.append(r"\bpay\s*(?:me|us)?\s*(?:via|by|with)\s+%s\b" % word())
    else: patterns.append(r"\b(?:whats\s*app|telegram|signal)\s*[:+]?\s*%s\b" % word())
rules.append({"id": "patterns", "action": "flag", "regex": patterns})
rules.append({"id": "contact", "action": "flag", "contact_details": True, "first_messages": 3})
rules.append({"id": "short", "action": "shadow", "link_domains": ["bit.ly", "tinyurl.com", "t.co"]})
if "--classifier" in sys.argv:
    rules.append({"id": "profanity", "action": "bounce", "classifier": {"min_score": 0.99, "fail": "open"}})
json.dump({"rules": rules}, sys.stdout)
