"""Prints bench/peers/run's table from the step outputs it kept in RESULTS.

usage: table.py RESULTS EVENTS PEER_EVENTS RATE PACK KNOWS_PACK [COMPRESSION [ROUNDS]]
COMPRESSION: relay.pack_compression of the packed bulk and end-to-end steps (default none).
ROUNDS: how many times relay-drain and replicate-apply ran, and the packed bulks and Londiste's
bulk took turns (default 1; the results of a run from before the rounds, with relay-drain.log,
bulk-packed.log and one londiste_bulk_seconds, read as one).
A figure that a step did not print shows as "-", and its target as "not measured".
"""
import os
import re
import statistics
import sys

results, events, peer_events, rate, pack, knows_pack = sys.argv[1:7]
compression = sys.argv[7] if len(sys.argv) > 7 else "none"
rounds = int(sys.argv[8]) if len(sys.argv) > 8 else 1
packed = f"relay.pack={pack}" + (f", {compression}" if compression != "none" else "")


def log(name, suffix=".log"):
    path = os.path.join(results, name + suffix)
    return open(path).read() if os.path.exists(path) else ""


def number(pattern, text):
    """The first number that pattern's group catches in text, without thousands separators."""
    found = re.search(pattern, text)
    return float(found.group(1).replace(",", "")) if found else None


figures, londiste_bulks = {}, []
if os.path.exists(os.path.join(results, "figures")):
    for line in open(os.path.join(results, "figures")):
        key, value = line.split()
        figures[key] = float(value)
        if key == "londiste_bulk_seconds":  # one line per round, in order
            londiste_bulks.append(float(value))

bulk, bulk_packed, e2e, e2e_packed = log("bulk"), log("bulk-packed"), log("end-to-end"), log("end-to-end-packed")
bulk_seconds = number(r"outbox:\s+([\d.]+) s", bulk)


def round_log(name, round):
    """A round's step output; round 1 of a run from before the rounds has no number."""
    return log(f"{name}-{round}") or (log(name) if round == 1 else "")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# Per round, relay-drain and replicate-apply, each beside its own ceiling: their figures are the
# medians of the rounds, and their targets are judged on the median of the rounds' ratios.
drains = [text for text in (round_log("relay-drain", r) for r in range(1, rounds + 1)) if text]
applies = [text for text in (round_log("replicate-apply", r) for r in range(1, rounds + 1)) if text]
drain, apply_log = "\n".join(drains), "\n".join(applies)
relay_rates = [number(r"relay:\s+([\d,.]+) events/s", text) for text in drains]
publishers = [number(r"ceiling:\s+([\d,.]+) msg/s", text) for text in drains]
# relay-drain --pack prints "packed:  relay.pack = N: R events/s in M messages, ..., peak RSS X MB".
packed_rates = [number(r"packed:.*?([\d,.]+) events/s", text) for text in drains]
apply_rates = [number(r"replicate:\s+([\d,.]+) events/s", text) for text in applies]
consumers = [number(r"ceiling:\s+([\d,.]+) msg/s", text) for text in applies]
relay_rate, publisher, packed_rate = median(relay_rates), median(publishers), median(packed_rates)
apply_rate, consumer = median(apply_rates), median(consumers)


# Per round: outbox's packed bulk with marks and with deletes (or, without packing, the plain bulk:
# round 1's is the bulk step), and Londiste's bulk right after them.
bulk_rounds = []
for round in range(1, rounds + 1):
    if knows_pack == "yes":
        marks, deletes = (number(r"outbox:\s+([\d.]+) s", round_log(name, round)) for name in ("bulk-packed", "bulk-packed-delete"))
    else:
        marks, deletes = number(r"outbox:\s+([\d.]+) s", bulk if round == 1 else log(f"bulk-{round}")), None
    londiste = londiste_bulks[round - 1] if round <= len(londiste_bulks) else None
    bulk_rounds.append((marks, deletes, londiste))


def median_of(column):
    return median(r[column] for r in bulk_rounds)


bulk_packed_seconds, bulk_deleting_seconds = median_of(0), median_of(1)
bulk_deleting = "\n".join(round_log("bulk-packed-delete", round) for round in range(1, rounds + 1))
bulk_packed = "\n".join(round_log("bulk-packed", round) for round in range(1, rounds + 1))


e2e_p99 = number(r"p99 ([\d.]+) ms", e2e)
e2e_packed_p99 = number(r"p99 ([\d.]+) ms", e2e_packed)


def every_number(pattern, texts):
    return [float(found) for text in texts for found in re.findall(pattern, text)]


rss = {
    "relay": every_number(r"relay:.*peak RSS ([\d.]+) MB", (drain, e2e, e2e_packed))
    + every_number(r"packed:.*peak RSS ([\d.]+) MB", (drain,)) + every_number(r"relay ([\d.]+) MB", (bulk, bulk_packed, bulk_deleting)),
    "replicate": every_number(r"replicate:.*peak RSS ([\d.]+) MB", (apply_log, e2e, e2e_packed))
    + every_number(r"replicate ([\d.]+) MB", (bulk, bulk_packed, bulk_deleting)),
}
# What the writers delivered: on a busy machine they fall behind the rate asked for.
e2e_writes = re.search(r"(\d+) writes in ([\d.]+) s", e2e)
e2e_delivered = int(e2e_writes.group(1)) / float(e2e_writes.group(2)) if e2e_writes else None
# How busy the machine was during those writes (bench/end-to-end; older logs do not say).
e2e_busy = number(r"during the writes: (\d+)% of", e2e)
londiste_delivered = number(r"tps = ([\d.]+)", log("pgbench", ".out"))
londiste_bulk = median(londiste_bulks)
londiste_p99 = figures.get("londiste_p99_ms")
pgto_rate = figures.get("pgto_drain_rate")


def show(value, unit="", digits=0):
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(value, target, passes):
    if value is None:
        return f"{target}: not measured"
    digits = 2
    while digits < 5 and passes(float(f"{value:.{digits}f}")) != passes(value):
        digits += 1  # 0.8496 does not meet 0.85: it is not shown as 0.85
    shown = f"{value:.{digits}f}"
    return f"{shown} ({target}: {'met' if passes(value) else 'NOT met'})"


def rounds_ratio(numerators, denominators, target, passes):
    """The median of the rounds' ratios against the target, and each round's ratio ("-" for a
    round that printed no figure)."""
    ratios = [ratio(a, b) for a, b in zip(numerators, denominators)]
    each = "" if len(ratios) < 2 else ", rounds: " + " ".join("-" if r is None else f"{r:.2f}" for r in ratios)
    return verdict(median(ratios), target, passes) + each


def of_rounds(values):
    """ " (median of N)" when N > 1 rounds printed the figure."""
    known = sum(v is not None for v in values)
    return f" (median of {known})" if known > 1 else ""


rows = [
    (f"relay drain, {int(events):,} rows{of_rounds(relay_rates)}", show(relay_rate, " ev/s"), show(publisher, " msg/s (publisher)"),
     f"pg-transactional-outbox: {show(pgto_rate, ' msg/s')} ({int(peer_events):,} msgs)"),
]
if knows_pack == "yes":
    rows.append((f"relay drain, relay.pack={pack}{of_rounds(packed_rates)}", show(packed_rate, " ev/s"), "", ""))
rows += [
    (f"replicate apply, {int(events):,} events{of_rounds(apply_rates)}", show(apply_rate, " ev/s"), show(consumer, " msg/s (consumer)"), ""),
    (f"bulk {int(events):,}: committed -> applied", show(bulk_seconds, " s", 2), "",
     f"Londiste 3: {show(londiste_bulk, ' s', 2)}" + (f" (median of {len(londiste_bulks)})" if len(londiste_bulks) > 1 else "")),
] + ([(f"bulk, {packed}" + (f" (median of {rounds})" if rounds > 1 else ""), show(bulk_packed_seconds, " s", 2), "", ""),
       ("  the same, relay.on_publish=delete", show(bulk_deleting_seconds, " s", 2), "", "")] if knows_pack == "yes" else []) + [
    (f"end to end p99 at {int(rate):,} writes/s", show(e2e_p99, " ms", 1), "", f"Londiste 3: {show(londiste_p99, ' ms')}"),
    ("  writes/s the writers delivered", show(e2e_delivered, "/s"), "", f"pgbench: {show(londiste_delivered, '/s')}"),
    ("  the machine busy during the writes", show(e2e_busy, "%"), "", ""),
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
print("  relay drain / publisher ceiling:        " + rounds_ratio(relay_rates, publishers, ">= 0.85", lambda v: v >= 0.85))
print("  relay drain / pg-transactional-outbox:  " + show(ratio(relay_rate, pgto_rate), " x", 1))
if knows_pack == "yes":
    print("  packed drain / unpacked drain:          " + rounds_ratio(packed_rates, relay_rates, ">= 3", lambda v: v >= 3))
else:
    print("  packed drain / unpacked drain:          relay.pack is not in this outbox: not measured")
print("  replicate apply / consumer ceiling:     " + rounds_ratio(apply_rates, consumers, ">= 0.8", lambda v: v >= 0.8))


def rounds_verdict(column):
    """The median over the rounds of outbox's bulk time in `column` over Londiste's, against 0.5."""
    return rounds_ratio([r[column] for r in bulk_rounds], [r[2] for r in bulk_rounds], "<= 0.5", lambda v: v <= 0.5)


if knows_pack == "yes":
    print("  bulk, outbox time / Londiste time:      "
          + verdict(ratio(bulk_seconds, londiste_bulks[0] if londiste_bulks else None), "<= 0.5", lambda v: v <= 0.5)
          + " (round 1's Londiste)")
    print("  bulk packed, outbox time / Londiste:    " + rounds_verdict(0))
    print("  the same, on_publish=delete / Londiste: " + rounds_verdict(1))
else:
    print("  bulk, outbox time / Londiste time:      " + rounds_verdict(0))
print("  end to end p99 <= 50 ms:                "
      + ("not measured" if e2e_p99 is None else f"{e2e_p99:.1f} ms ({'met' if e2e_p99 <= 50 else 'NOT met'})")
      + ("" if e2e_packed_p99 is None else f"; packed {e2e_packed_p99:.1f} ms ({'met' if e2e_packed_p99 <= 50 else 'NOT met'})"))
print("  end to end p99, Londiste / outbox:      " + show(ratio(londiste_p99, e2e_p99), " x", 1))
for name in ("relay", "replicate"):
    print(f"  peak RSS {name} <= 30 MB:" + " " * (21 - len(name))
          + ("not measured" if peak[name] is None else f"{peak[name]:.1f} MB ({'met' if peak[name] <= 30 else 'NOT met'})"))
