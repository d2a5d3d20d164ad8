#!/usr/bin/env python3
"""Turns bench/run.sh's per-round results (TSV) into the markdown report.

Each row reports the median over rounds of requests/s, p50 and p99; non-2xx and socket
errors are summed; CPU per request is the median over rounds; peak RSS and descriptors are
the maximum over rounds.
"""

import argparse
import csv
import statistics
import sys
from collections import OrderedDict


def load(path):
    rows = OrderedDict()
    with open(path, newline="") as handle:
        for record in csv.DictReader(handle, delimiter="\t"):
            for key in record:
                if key not in ("id", "row", "file"):
                    record[key] = int(record[key])
            rows.setdefault(record["id"], []).append(record)
    return rows


def summarize(records):
    first = records[0]
    rps = [r["requests"] * 1e6 / r["duration_us"] for r in records]
    per_req = lambda key: [  # noqa: E731  CPU seconds per request, in microseconds
        r[key] / r["clk_tck"] * 1e6 / r["requests"] for r in records if r["requests"]
    ]
    return {
        "row": first["row"],
        "file": first["file"],
        "conns": first["conns"],
        "rounds": len(records),
        "rps": statistics.median(rps),
        "rps_all": rps,
        "p50": statistics.median(r["p50_us"] for r in records),
        "p99": statistics.median(r["p99_us"] for r in records),
        "non2xx": sum(r["non2xx"] for r in records),
        "socket_errors": sum(r["socket_errors"] for r in records),
        "requests": sum(r["requests"] for r in records),
        "nginx_cpu": statistics.median(per_req("nginx_cpu_ticks")),
        "wrk_cpu": statistics.median(per_req("wrk_cpu_ticks")),
        "foreign": statistics.median(r["foreign_pct"] for r in records),
        "foreign_max": max(r["foreign_pct"] for r in records),
        "steal": statistics.median(r["steal_pct"] for r in records),
        "retries": sum(r["retries"] for r in records),
        "mg_cpu": statistics.median(per_req("mg_cpu_ticks")),
        "store_cpu": statistics.median(per_req("store_cpu_ticks")),
        "mg_hwm_kib": max(r["mg_hwm_kib"] for r in records),
        "mg_hwm_first_kib": records[0]["mg_hwm_kib"],
        "mg_fds": max(r["mg_fds"] for r in records),
        "mg_log_bytes": sum(r["mg_log_bytes"] for r in records)
        / max(1, sum(r["mg_allows"] for r in records)),
        "mg_audit_lines": sum(r["mg_audit_lines"] for r in records)
        / max(1, sum(r["mg_allows"] for r in records)),
        "mg_other": sum(r["mg_other"] for r in records),
        "mediagate": any(r["mg_hwm_kib"] for r in records),
    }


def total_cpu(s):
    """CPU per request of everything serving it (nginx, mediagate, redis-server for the Redis
    rows, wrk), in microseconds."""
    return s["nginx_cpu"] + (s["mg_cpu"] if s["mediagate"] else 0) + s["store_cpu"] + s["wrk_cpu"]


def granted(row_id):
    """The rows whose token comes from a path segment or the grant cookie (issue 10), and the
    query link's second row, which brackets them."""
    return row_id in ("mediagate_auth_path_4k", "mediagate_auth_cookie_4k", "mediagate_auth_again_4k")


def query_bracket(rows):
    """The query link's req/s for the grant rows: the mean of its row before them and its row
    after them (`None` without both)."""
    before, after = rows.get("mediagate_auth_4k"), rows.get("mediagate_auth_again_4k")
    if not (before and after):
        return None
    return (before["rps"] + after["rps"]) / 2


def counted(row_id):
    """A row whose token has a use limit (every request a new use)."""
    return "counted" in row_id


def ms(us):
    return f"{us / 1000:.2f} ms"


def reference(rows, row_id, s):
    """The row this one is compared with: static (same file, same connections), nginx's
    direct 204 for the direct rows, the uncounted mediagate_auth row (same connections) for
    the counted rows, and the query link's row for the grant rows."""
    if granted(row_id):
        return ("mediagate_auth_4k" if "mediagate_auth_4k" in rows else None), "query link"
    if counted(row_id):
        ref = "mediagate_auth_4k" + ("" if s["conns"] == rows["mediagate_auth_4k"]["conns"] else f"_c{s['conns']}")
        return (ref if ref in rows else None), "uncounted"
    if s["file"] == "-":
        ref = "nginx_204_direct" if s["conns"] == rows["nginx_204_direct"]["conns"] else None
        return ref, "nginx 204"
    ref = f"static_{s['file']}"
    if s["conns"] != rows[ref]["conns"]:
        ref = f"static_{s['file']}_c{s['conns']}"
    return (ref if ref in rows else None), "static"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--date", default="")
    parser.add_argument("--command", default="")
    parser.add_argument("--machine", default="")
    parser.add_argument("--revision", default="")
    parser.add_argument("--note", default="")
    args = parser.parse_args()

    rows = OrderedDict((key, summarize(value)) for key, value in load(args.results).items())
    # Print in a fixed, readable order: by file size, then as run.sh lists them.
    order = sorted(rows, key=lambda k: ({"4k": 0, "1m": 1, "-": 2}[rows[k]["file"]], rows[k]["conns"]))
    out = []
    w = out.append
    w(f"Run: {args.date} — `{args.command}`  ")
    w(f"Machine: {args.machine}  ")
    w(f"Revision: {args.revision}")
    w("")
    w("`× ref`: req/s over the reference row's (static with the same file and connections; nginx's")
    w("direct 204 for the direct rows; the uncounted mediagate_auth row with the same connections for")
    w("the counted rows). `× ref by CPU`: the reference's total CPU per request over")
    w("this row's — the throughput ratio a CPU-bound machine predicts, and far less sensitive to")
    w("other load on the machine than req/s.")
    w("")
    w("| row | file | conns | req/s (median) | req/s per round | p50 | p99 | non-2xx | × ref | × ref by CPU |")
    w("|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for key in order:
        s = rows[key]
        ref, label = reference(rows, key, s)
        ratio = f"{s['rps'] / rows[ref]['rps']:.2f}× {label}" if ref and ref != key else "1.00" if ref == key else "–"
        by_cpu = f"{total_cpu(rows[ref]) / total_cpu(s):.2f}" if ref else "–"
        errors = f"{s['non2xx']}" + (f" (+{s['socket_errors']} socket)" if s["socket_errors"] else "")
        per_round = " / ".join(f"{x:,.0f}" for x in s["rps_all"])
        w(f"| {s['row']} | {s['file']} | {s['conns']} | {s['rps']:,.0f} | {per_round} | {ms(s['p50'])} "
          f"| {ms(s['p99'])} | {errors} | {ratio} | {by_cpu} |")
    w("")
    w("CPU time per request (utime+stime of each process, median over rounds) and the load other")
    w("processes put on this shared machine meanwhile (% of one core; median / worst round):")
    w("")
    w("| row | file | conns | nginx | mediagate | redis-server | wrk | total | other load | steal |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in order:
        s = rows[key]
        nginx = s["nginx_cpu"] if s["nginx_cpu"] > 0 else None
        mine = s["mg_cpu"] if s["mediagate"] else None
        total = total_cpu(s)
        cell = lambda v: "–" if v is None else f"{v:.1f} µs"  # noqa: E731
        retried = f" ({s['retries']} retried)" if s["retries"] else ""
        store = s["store_cpu"] if s["store_cpu"] > 0 else None
        w(f"| {s['row']} | {s['file']} | {s['conns']} | {cell(nginx)} | {cell(mine)} | {cell(store)} | {cell(s['wrk_cpu'])} "
          f"| {total:.1f} µs | {s['foreign']}% / {s['foreign_max']}%{retried} | {s['steal']}% |")
    w("")
    w("mediagate (the sidecar process, all threads):")
    w("")
    w("| row | file | conns | CPU/req | peak RSS (VmHWM), round 1 / all rounds | peak open fds | log bytes/decision | non-allow decisions |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for key in order:
        s = rows[key]
        if s["mediagate"]:
            w(f"| {s['row']} | {s['file']} | {s['conns']} | {s['mg_cpu']:.1f} µs | {s['mg_hwm_first_kib'] / 1024:.1f} / {s['mg_hwm_kib'] / 1024:.1f} MiB "
              f"| {s['mg_fds']} | {s['mg_log_bytes']:.0f} | {s['mg_other']} |")
    w("")
    if args.note:
        w(f"Audit log over the whole run: {args.note}.")
        w("")

    # ---- targets ----------------------------------------------------------------------
    w("| target | this run | met? |")
    w("|---|---|---|")
    verdicts = []

    def target(name, value, ok, soft=None):
        status = "yes" if ok else ("no (but above the hard floor)" if soft else "**no**")
        verdicts.append(ok)
        w(f"| {name} | {value} | {status} |")

    for f in ("4k", "1m"):
        for mode, floor in (("auth", "auth_floor"), ("accel", "accel_floor")):
            mine, base = rows.get(f"mediagate_{mode}_{f}"), rows.get(f"{floor}_{f}")
            if not (mine and base):
                continue
            ratio = mine["rps"] / base["rps"]
            target(f"mediagate_{mode} ≥ 0.95× {floor} (never < 0.9×), {f}",
                   f"{ratio:.2f}× (by CPU: {total_cpu(base) / total_cpu(mine):.2f}×)",
                   ratio >= 0.95, ratio >= 0.9)
            p99 = mine["p99"] / base["p99"]
            target(f"mediagate_{mode} p99 ≤ 1.2× {floor} p99, {f}",
                   f"{ms(mine['p99'])} vs {ms(base['p99'])} = {p99:.2f}×", p99 <= 1.2)
    mine, proxy = rows.get("mediagate_auth_4k"), rows.get("auth_proxy_floor_4k")
    if mine and proxy:
        w(f"| (context, not a target) mediagate_auth vs auth_proxy_floor, 4k: an nginx 'sidecar' that "
          f"answers 204 over the same kind of upstream | {mine['rps'] / proxy['rps']:.2f}× req/s "
          f"(by CPU {total_cpu(proxy) / total_cpu(mine):.2f}×), "
          f"p99 {mine['p99'] / proxy['p99']:.2f}× | – |")
    cached, link = rows.get("mediagate_auth_cached_4k"), rows.get("secure_link_4k")
    if cached and link:
        w(f"| (aim, not a target) mediagate_auth behind the optional nginx auth cache vs secure_link, 4k "
          f"| {cached['rps'] / link['rps']:.2f}× req/s, p99 {cached['p99'] / link['p99']:.2f}× | – |")
    direct, nginx = rows.get("mediagate_direct"), rows.get("nginx_204_direct")
    if direct and nginx:
        ratio = direct["rps"] / nginx["rps"]
        target("direct mediagate /auth ≥ 0.8× nginx `return 204`",
               f"{direct['rps']:,.0f} vs {nginx['rps']:,.0f} req/s = {ratio:.2f}× "
               f"(by CPU: {total_cpu(nginx) / total_cpu(direct):.2f}×; server alone: "
               f"{direct['mg_cpu']:.1f} vs {nginx['nginx_cpu']:.1f} µs/req)", ratio >= 0.8)
    plain, count = rows.get("mediagate_auth_4k"), rows.get("mediagate_auth_counted_4k")
    if plain and count:
        ratio = plain["rps"] / count["rps"]
        target(f"a counted check on the embedded store costs ≤ 2× an uncounted one, 4k, c{count['conns']} "
               f"(every request a new use)",
               f"{ratio:.2f}× the time per request ({count['rps']:,.0f} vs {plain['rps']:,.0f} req/s; by CPU: "
               f"{total_cpu(count) / total_cpu(plain):.2f}×; mediagate alone {count['mg_cpu']:.1f} vs "
               f"{plain['mg_cpu']:.1f} µs/req)", ratio <= 2)
    plain, query = rows.get("mediagate_auth_4k"), query_bracket(rows)
    for key, name in (("mediagate_auth_path_4k", "path"), ("mediagate_auth_cookie_4k", "cookie")):
        mine = rows.get(key)
        if plain and query and mine:
            ratio = mine["rps"] / query
            target(f"a {name} grant verifies at the cost of a query link: ≥ 0.95× its req/s "
                   f"(never < 0.9×; the query link's rows before and after, averaged), 4k, c{mine['conns']}",
                   f"{ratio:.2f}× ({mine['rps']:,.0f} vs {query:,.0f} req/s; by CPU against the first: "
                   f"{total_cpu(plain) / total_cpu(mine):.2f}×; mediagate alone {mine['mg_cpu']:.1f} vs "
                   f"{plain['mg_cpu']:.1f} µs/req)", ratio >= 0.95, ratio >= 0.9)
    uses = [(k, rows[k]) for k in order if counted(k)]
    if uses:
        w("| (context) counted uses per second, every request a new use | "
          + "; ".join(f"{s['row'].split('(')[1].rstrip(')')} c{s['conns']}: {s['rps']:,.0f}" for _, s in uses)
          + " | – |")
    mg_rows = [rows[k] for k in order if rows[k]["mediagate"]]
    stateless = [rows[k] for k in order if rows[k]["mediagate"] and not counted(k)]
    if stateless:
        worst = max(stateless, key=lambda s: s["mg_cpu"])
        target("sidecar CPU ≤ 10 µs per request (every mediagate row without a use limit)",
               f"{min(s['mg_cpu'] for s in stateless):.1f}–{worst['mg_cpu']:.1f} µs (worst: {worst['row']}, {worst['file']}, c{worst['conns']})",
               worst["mg_cpu"] <= 10)
        big = [s for s in stateless if s["conns"] >= 1000]
        if big:
            peak = max(s["mg_hwm_kib"] for s in big) / 1024
            fds = max(s["mg_fds"] for s in big)
            target("peak RSS < 30 MiB at 1,000 connections", f"{peak:.1f} MiB (up to {fds} open fds)", peak < 30)
    bad = sum(s["non2xx"] + s["socket_errors"] + s["mg_other"] for s in mg_rows)
    total = sum(s["requests"] for s in mg_rows)
    others = sum(s["non2xx"] + s["socket_errors"] for s in rows.values() if not s["mediagate"])
    target("no non-2xx (nor socket errors) through mediagate",
           f"{bad} of {total:,} requests (rows without mediagate: {others})", bad == 0)
    w("")
    w(f"Targets met: {sum(verdicts)} of {len(verdicts)}.")
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
