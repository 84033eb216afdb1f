#!/usr/bin/env python3
"""Summary of one tests/bench/run: tables, ratios, the issue's targets.

    summary.py RESULTS.jsonl [JSON_OUT]

RESULTS.jsonl holds one JSON object per measured point (see run). Prints
everything; with JSON_OUT also writes the headline (32 clients, P-256) with
the issue's keys, the ratios, the targets and every point under "runs"."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
out_path = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None


def kind(k, **match):
    return [r for r in rows if r["kind"] == k and all(r.get(a) == b for a, b in match.items())]


def one(k, **match):
    found = kind(k, **match)
    return found[0] if found else None


def best(k, **match):
    found = kind(k, **match)
    return max(found, key=lambda r: r["ops_per_s"]) if found else None


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def fmt(v, spec="{:,.0f}"):
    return "-" if v is None else spec.format(v)


m = one("machine") or {}
print(f"machine: {m.get('cpus')} CPUs ({m.get('cpu')}), kernel {m.get('kernel')}, {m.get('fs')} state dir, "
      f"load {m.get('loadavg')} at start")
print(f"versions: SoftHSM2 {m.get('softhsm2')}, libp11 {m.get('libp11')}, p11-kit {m.get('p11kit')}, "
      f"{m.get('openssh')}, OpenSSL {m.get('openssl')}, provsign {m.get('provsign')}")

try:
    load1 = float(str(m.get("loadavg", "0")).split()[0])
    if load1 > float(m.get("cpus", 1)):
        print(f"WARNING: load average {load1} on {m.get('cpus')} CPUs when the run started: other work shares "
              "the machine, so absolute figures and the verdicts below are not comparable between runs")
except ValueError:
    pass

micro = one("micro") or {}
print(f"\nfloor: fdatasync of a 200-byte append {fmt(micro.get('fdatasync_per_s'))}/s "
      f"(p50 {fmt(micro.get('fdatasync_p50_us'))} us); 8 records per sync {fmt(micro.get('records8_per_s'))} records/s; "
      f"socket round trip p50 {fmt(micro.get('socket_rtt_p50_us'), '{:.1f}')} us")

algs = []
for r in rows:
    if r["kind"] == "agent" and r["alg"] not in algs:
        algs.append(r["alg"])

for alg in algs:
    c1 = one("ceiling", alg=alg, threads=1)
    print(f"\n{alg}: agent (log on) vs in-process ceiling (same token, same thread count)")
    print(f"{'clients':>7} {'sig/s':>8} {'p50_us':>7} {'p99_us':>7} {'p999_us':>8} {'cpu_us/sig':>10} "
          f"{'outside_tok':>11} {'ent/sync':>8} {'ceiling':>8} {'agent/ceil':>10}")
    for r in kind("agent", alg=alg):
        ce = one("ceiling", alg=alg, threads=r["clients"])
        # The group's checkpoint is signed with the log key, always P-256.
        ck = one("ceiling", alg="p256", threads=1)
        outside = None
        if c1 and ck:
            outside = r["cpu_us_per_sig"] - c1["cpu_us_per_op"] - ck["cpu_us_per_op"] / max(r["entries_per_sync"], 1)
        print(f"{r['clients']:>7} {r['ops_per_s']:>8,.0f} {r['p50_us']:>7,.0f} {r['p99_us']:>7,.0f} "
              f"{r['p999_us']:>8,.0f} {r['cpu_us_per_sig']:>10.1f} {fmt(outside, '{:.1f}'):>11} "
              f"{r['entries_per_sync']:>8.1f} {fmt(ce and ce['ops_per_s']):>8} "
              f"{fmt(ratio(r['ops_per_s'], ce and ce['ops_per_s']), '{:.2f}'):>10}")
    print("  ceiling: " + ", ".join(f"{c['threads']} thr {c['ops_per_s']:,.0f}/s (p50 {c['p50_us']:.0f} us, "
                                     f"{c['cpu_us_per_op']:.0f} us CPU/sig)" for c in kind("ceiling", alg=alg)))
    for r in kind("pipelined", alg=alg):
        a32 = one("agent", alg=alg, clients=32)
        print(f"  one client pipelining {r['pipeline']} requests on one connection: {r['ops_per_s']:,.0f} sig/s "
              f"(call p50 {r['p50_us']:,.0f} us, {r['cpu_us_per_sig']:.1f} us agent CPU/sig, "
              f"{r['entries_per_sync']:.1f} entries/sync), "
              f"{fmt(ratio(r['ops_per_s'], a32 and a32['ops_per_s']), '{:.2f}')} of the 32-client figure "
              f"(target >= 0.6)")
    p = kind("p11kit", alg=alg)
    if p:
        print("  p11-kit server: " + ", ".join(f"{x['procs']} proc {x['ops_per_s']:,.0f}/s" for x in p))
    s = kind("ssh", alg=alg)
    if s:
        print("  ssh-agent: " + ", ".join(f"{x['clients']} clients {x['ops_per_s']:,.0f}/s" for x in s))

rss = one("rss") or {}
peak = one("peak") or {}
base = one("ceiling", alg="p256", threads=2) or one("ceiling", threads=2) or {}
print(f"\nRSS: agent idle {fmt(rss.get('idle_kib'))} KiB, with 1,000 idle connections "
      f"{fmt(rss.get('conns1000_kib'))} KiB ({rss.get('agent_fds')} fds), peak {fmt(peak.get('agent_hwm_kib'))} KiB; "
      f"in-process baseline (2 threads) {fmt(base.get('rss_kib'))} KiB")

delay = kind("delay")
if delay:
    print("\nnetwork-HSM stand-in (P-256, 128 clients, -Dbench_hsm_delay_us):")
    for d in sorted({r["delay_us"] for r in delay}):
        print(f"  {d / 1000:g} ms per sign: " + ", ".join(
            f"{r['workers']} workers {r['ops_per_s']:,.0f}/s (p50 {r['p50_us'] / 1000:.1f} ms)"
            for r in sorted(kind("delay", delay_us=d), key=lambda r: r["workers"])))
rep = one("replay")
if rep:
    print(f"\nlog replay at start (CRC32C, sequence, Merkle rebuild): {fmt(rep['entries_per_s'])} entries/s")

# ---- headline and targets: P-256, log on, 32 clients ----
a32 = one("agent", alg="p256", clients=32)
a1 = one("agent", alg="p256", clients=1)
c2 = one("ceiling", alg="p256", threads=2)
c32 = one("ceiling", alg="p256", threads=32)
c1 = one("ceiling", alg="p256", threads=1)
pk = best("p11kit", alg="p256")
pl = one("pipelined", alg="p256", pipeline=32)
sh = best("ssh", alg="p256")
ops = a32 and a32["ops_per_s"]
floor_us = None
if c1 and micro:
    floor_us = c1["p50_us"] + micro["fdatasync_p50_us"] + micro["socket_rtt_p50_us"] + 30
targets = []


def target(name, value, limit, ok):
    targets.append({"target": name, "value": value, "limit": limit, "met": ok})


if ops is not None:
    target("agent / 2-thread ceiling >= 0.75", ratio(ops, c2 and c2["ops_per_s"]), 0.75,
           bool(c2) and ops >= 0.75 * c2["ops_per_s"])
    target("agent / best p11-kit server >= 1.2", ratio(ops, pk and pk["ops_per_s"]), 1.2,
           bool(pk) and ops >= 1.2 * pk["ops_per_s"])
    target("agent / best ssh-agent >= 8", ratio(ops, sh and sh["ops_per_s"]), 8, bool(sh) and ops >= 8 * sh["ops_per_s"])
if ops is not None and pl:
    target("one client pipelining 32 requests on one connection / 32 clients >= 0.6",
           ratio(pl["ops_per_s"], ops), 0.6, pl["ops_per_s"] >= 0.6 * ops)
if a1 and floor_us:
    target("1-client p50 <= raw sign + fdatasync + round trip + 30 us (us)", a1["p50_us"], round(floor_us),
           a1["p50_us"] <= floor_us)
if rss and base:
    target("idle RSS <= baseline + 4 MiB (KiB)", rss["idle_kib"], base["rss_kib"] + 4096,
           rss["idle_kib"] <= base["rss_kib"] + 4096)
    target("RSS with 1,000 idle connections <= baseline + 16 MiB (KiB)", rss["conns1000_kib"], base["rss_kib"] + 16384,
           rss["conns1000_kib"] <= base["rss_kib"] + 16384)
if targets:
    print("\ntargets (P-256, log on, 32 clients, this run):")
    for t in targets:
        print(f"  {'met   ' if t['met'] else 'MISSED'} {t['target']}: {t['value']} (limit {t['limit']})")
if a32 and c1:
    print(f"agent CPU per signature: {a32['cpu_us_per_sig']:.1f} us, of which the token "
          f"{c1['cpu_us_per_op'] * (1 + 1 / max(a32['entries_per_sync'], 1)):.1f} us "
          f"(one signature plus 1/{a32['entries_per_sync']:.1f} of a checkpoint signature)")

# What any signing server could reach here: the 32 bench clients run on the
# same CPUs, so each signature costs at least the token's CPU (the 2-thread
# ceiling's, a hot loop) plus the clients' own. The agent's budget for
# everything else (reading, the log, the checkpoint's share, replying) under
# a ratio target R of a reference X is cpus / (R * X) - token - clients.
bound = None
client_cpu = a32 and a32.get("client_cpu_us_per_sig")
try:
    cpus = int(m.get("cpus"))
except (TypeError, ValueError):
    cpus = None
if a32 and c2 and client_cpu and cpus:
    token_cpu = c2["cpu_us_per_op"]
    bound = cpus * 1e6 / (token_cpu + client_cpu)
    own = a32["cpu_us_per_sig"] - token_cpu
    print(f"no-overhead bound: {cpus} CPUs / (token {token_cpu:.0f} + clients {client_cpu:.1f} us CPU/sig) = "
          f"{bound:,.0f} sig/s = {bound / c2['ops_per_s']:.2f} of the 2-thread ceiling "
          f"(a server that cost nothing itself); the agent reaches {ops / bound:.2f} of it")

    def budget(what, r, x):
        left = cpus * 1e6 / (r * x) - token_cpu - client_cpu
        print(f"  {what}: the agent's own CPU per signature (beyond its token signature) must be <= {left:.1f} us; "
              f"it is {fmt(own, '{:.1f}')} us")

    budget("agent / 2-thread ceiling >= 0.75", 0.75, c2["ops_per_s"])
    if pk:
        budget("agent / best p11-kit server >= 1.2", 1.2, pk["ops_per_s"])
    if sh:
        budget("agent / best ssh-agent >= 8", 8, sh["ops_per_s"])

if out_path:
    head = {
        "clients": 32,
        "algorithm": "ecdsa-p256",
        "agent_ops_per_s": ops,
        "p50_us": a32 and a32["p50_us"],
        "p99_us": a32 and a32["p99_us"],
        "p999_us": a32 and a32["p999_us"],
        "agent_cpu_us_per_sig": a32 and a32["cpu_us_per_sig"],
        "ceiling_ops_per_s": c2 and c2["ops_per_s"],
        "ceiling_same_threads_ops_per_s": c32 and c32["ops_per_s"],
        "p11kit_ops_per_s": pk and pk["ops_per_s"],
        "sshagent_ops_per_s": sh and sh["ops_per_s"],
        "agent_rss_kib": rss.get("idle_kib"),
        "agent_rss_1000_conns_kib": rss.get("conns1000_kib"),
        "agent_peak_rss_kib": peak.get("agent_hwm_kib"),
        "baseline_rss_kib": base.get("rss_kib"),
        "single_client_p50_us": a1 and a1["p50_us"],
        "pipelined_ops_per_s": pl and pl["ops_per_s"],
        "single_client_floor_us": floor_us and round(floor_us),
        "client_cpu_us_per_sig": client_cpu,
        "no_overhead_bound_ops_per_s": bound and round(bound),
        "targets": targets,
        "machine": m,
        "floor": micro,
        "runs": [r for r in rows if r["kind"] not in ("machine", "micro")],
    }
    with open(out_path, "w") as f:
        json.dump(head, f, indent=2)
        f.write("\n")
