"""Prints bench/peers/run's table from the step outputs it kept in RESULTS.

usage: table.py RESULTS EVENTS PEER_EVENTS RATE PACK KNOWS_PACK [COMPRESSION]
COMPRESSION: relay.pack_compression of the packed bulk and end-to-end steps (default none).
A figure that a step did not print shows as "-", and its target as "not measured".
"""
import os
import re
import sys

results, events, peer_events, rate, pack, knows_pack = sys.argv[1:7]
compression = sys.argv[7] if len(sys.argv) > 7 else "none"
packed = f"relay.pack={pack}" + (f", {compression}" if compression != "none" else "")


def log(name, suffix=".log"):
    path = os.path.join(results, name + suffix)
    return open(path).read() if os.path.exists(path) else ""


def number(pattern, text):
    """The first number that pattern's group catches in text, without thousands separators."""
    found = re.search(pattern, text)
    return float(found.group(1).replace(",", "")) if found else None


figures = {}
if os.path.exists(os.path.join(results, "figures")):
    for line in open(os.path.join(results, "figures")):
        key, value = line.split()
        figures[key] = float(value)

drain, apply_log = log("relay-drain"), log("replicate-apply")
bulk, bulk_packed, e2e, e2e_packed = log("bulk"), log("bulk-packed"), log("end-to-end"), log("end-to-end-packed")
relay_rate = number(r"relay:\s+([\d,.]+) events/s", drain)
publisher = number(r"ceiling:\s+([\d,.]+) msg/s", drain)
# relay-drain --pack prints "packed:  relay.pack = N: R events/s in M messages, ..., peak RSS X MB".
packed_rate = number(r"packed:.*?([\d,.]+) events/s", drain)
apply_rate = number(r"replicate:\s+([\d,.]+) events/s", apply_log)
consumer = number(r"ceiling:\s+([\d,.]+) msg/s", apply_log)
bulk_seconds = number(r"outbox:\s+([\d.]+) s", bulk)
bulk_packed_seconds = number(r"outbox:\s+([\d.]+) s", bulk_packed)
bulk_deleting = log("bulk-packed-delete")
bulk_deleting_seconds = number(r"outbox:\s+([\d.]+) s", bulk_deleting)
e2e_p99 = number(r"p99 ([\d.]+) ms", e2e)
e2e_packed_p99 = number(r"p99 ([\d.]+) ms", e2e_packed)
rss = {
    "relay": [number(r"relay:.*peak RSS ([\d.]+) MB", text) for text in (drain, e2e, e2e_packed)]
    + [number(r"packed:.*peak RSS ([\d.]+) MB", drain)] + [number(r"relay ([\d.]+) MB", text) for text in (bulk, bulk_packed, bulk_deleting)],
    "replicate": [number(r"replicate:.*peak RSS ([\d.]+) MB", text) for text in (apply_log, e2e, e2e_packed)]
    + [number(r"replicate ([\d.]+) MB", text) for text in (bulk, bulk_packed, bulk_deleting)],
}
# What the writers delivered: on a busy machine they fall behind the rate asked for.
e2e_writes = re.search(r"(\d+) writes in ([\d.]+) s", e2e)
e2e_delivered = int(e2e_writes.group(1)) / float(e2e_writes.group(2)) if e2e_writes else None
londiste_delivered = number(r"tps = ([\d.]+)", log("pgbench", ".out"))
londiste_bulk = figures.get("londiste_bulk_seconds")
londiste_p99 = figures.get("londiste_p99_ms")
pgto_rate = figures.get("pgto_drain_rate")


def show(value, unit="", digits=0):
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(value, target, passes):
    if value is None:
        return f"{target}: not measured"
    return f"{value:.2f} ({target}: {'met' if passes(value) else 'NOT met'})"


rows = [
    (f"relay drain, {int(events):,} rows", show(relay_rate, " ev/s"), show(publisher, " msg/s (publisher)"),
     f"pg-transactional-outbox: {show(pgto_rate, ' msg/s')} ({int(peer_events):,} msgs)"),
]
if knows_pack == "yes":
    rows.append((f"relay drain, relay.pack={pack}", show(packed_rate, " ev/s"), "", ""))
rows += [
    (f"replicate apply, {int(events):,} events", show(apply_rate, " ev/s"), show(consumer, " msg/s (consumer)"), ""),
    (f"bulk {int(events):,}: committed -> applied", show(bulk_seconds, " s", 2), "",
     f"Londiste 3: {show(londiste_bulk, ' s', 2)}"),
] + ([(f"bulk, {packed}", show(bulk_packed_seconds, " s", 2), "", ""),
       ("  the same, relay.on_publish=delete", show(bulk_deleting_seconds, " s", 2), "", "")] if knows_pack == "yes" else []) + [
    (f"end to end p99 at {int(rate):,} writes/s", show(e2e_p99, " ms", 1), "", f"Londiste 3: {show(londiste_p99, ' ms')}"),
    ("  writes/s the writers delivered", show(e2e_delivered, "/s"), "", f"pgbench: {show(londiste_delivered, '/s')}"),
]
if knows_pack == "yes":
    rows.append((f"end to end p99, {packed}", show(e2e_packed_p99, " ms", 1), "", ""))
peak = {name: max((v for v in values if v is not None), default=None) for name, values in rss.items()}
rows.append(("peak RSS relay / replicate", f"{show(peak['relay'], ' MB', 1)} / {show(peak['replicate'], ' MB', 1)}",
             "", ""))

header = ("job", "outbox", "ceiling", "peer")
widths = [max(len(row[i]) for row in rows + [header]) for i in range(4)]
for row in [header, tuple("-" * w for w in widths)] + rows:
    print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")

print()
print("against issue 19's targets (same run):")
print("  relay drain / publisher ceiling:        " + verdict(ratio(relay_rate, publisher), ">= 0.85", lambda v: v >= 0.85))
print("  relay drain / pg-transactional-outbox:  " + show(ratio(relay_rate, pgto_rate), " x", 1))
if knows_pack == "yes":
    print("  packed drain / unpacked drain:          "
          + verdict(ratio(packed_rate, relay_rate), ">= 3", lambda v: v >= 3))
else:
    print("  packed drain / unpacked drain:          relay.pack is not in this outbox: not measured")
print("  replicate apply / consumer ceiling:     " + verdict(ratio(apply_rate, consumer), ">= 0.8", lambda v: v >= 0.8))
print("  bulk, outbox time / Londiste time:      "
      + verdict(ratio(bulk_seconds, londiste_bulk), "<= 0.5", lambda v: v <= 0.5))
if knows_pack == "yes":
    print("  bulk packed, outbox time / Londiste:    "
          + verdict(ratio(bulk_packed_seconds, londiste_bulk), "<= 0.5", lambda v: v <= 0.5))
    print("  the same, on_publish=delete / Londiste: "
          + verdict(ratio(bulk_deleting_seconds, londiste_bulk), "<= 0.5", lambda v: v <= 0.5))
print("  end to end p99 <= 50 ms:                "
      + ("not measured" if e2e_p99 is None else f"{e2e_p99:.1f} ms ({'met' if e2e_p99 <= 50 else 'NOT met'})")
      + ("" if e2e_packed_p99 is None else f"; packed {e2e_packed_p99:.1f} ms ({'met' if e2e_packed_p99 <= 50 else 'NOT met'})"))
print("  end to end p99, Londiste / outbox:      " + show(ratio(londiste_p99, e2e_p99), " x", 1))
for name in ("relay", "replicate"):
    print(f"  peak RSS {name} <= 30 MB:" + " " * (21 - len(name))
          + ("not measured" if peak[name] is None else f"{peak[name]:.1f} MB ({'met' if peak[name] <= 30 else 'NOT met'})"))
