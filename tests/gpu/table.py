"""`OUTDIR/table.md` of the GPU suite: README-ready markdown from `suite.json`'s content."""

from __future__ import annotations


def _fmt(value, spec: str = ",.0f", missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def render_table(suite: dict) -> str:
    env = suite.get("environment", {})
    steps = {s["name"]: s for s in suite["steps"]}
    peak = env.get("peak_bf16_tflops")
    lines = [f"### GPU suite: {env.get('device_name', '?')}"
             + (f" (dense bf16 peak {peak:.0f} TFLOP/s)" if peak else ""), "",
             f"{suite['started_utc']}, `{suite['command']}`, torch {env.get('torch', '?')}, "
             f"CUDA {env.get('cuda')}, Python {env.get('python', '?')}; wall {suite.get('wall_s', 0):.0f} s "
             f"of a {suite['budget_s']:.0f} s budget. Wheels: {env.get('wheels', '?')}.", "",
             "| step | status | seconds | note |", "| --- | --- | ---: | --- |"]
    for s in suite["steps"]:
        lines.append(f"| {s['name']} | {s['status']} | {s.get('seconds', 0):.0f} | "
                     f"{str(s.get('reason', '')).replace('|', '/')[:160]} |")
    rows = steps.get("throughput", {}).get("rows", [])
    if rows:
        lines += ["", f"Throughput (`slm bench --json`, seq {rows[0]['seq_len']}, accumulation 1):", "",
                  "| model | option | micro-batch | tokens/s | MFU | step p50 / p90 ms | peak GB | status |",
                  "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |"]
        for r in rows:
            mfu = None if r.get("mfu") is None else 100 * r["mfu"]
            option = r["option"] + (" vs HF" if r.get("compare") else "")
            note = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"[:120]
            if r.get("speedup_vs_hf"):
                note += f"; ours/HF {r['speedup_vs_hf']:.2f}x"
            lines.append(f"| {r['model']} | {option} | {r['micro_batch']} | {_fmt(r.get('tokens_per_s'))} | "
                         f"{_fmt(mfu, '.1f')}{'%' if mfu is not None else ''} | "
                         f"{_fmt(r.get('step_p50_ms'), '.0f')} / {_fmt(r.get('step_p90_ms'), '.0f')} | "
                         f"{_fmt(r.get('peak_memory_gb'), '.1f')} | {note.replace('|', '/')} |")
    real = steps.get("real_path", {})
    if real.get("pretrain"):
        bench = real.get("bench") or {}
        lines += ["", f"`slm pretrain` (configs/tinyllama-1.1b.yaml, {real.get('steps')} steps, micro-batch "
                  f"{real.get('micro_batch')}, seq {real.get('seq_len')}): "
                  f"{_fmt(real['pretrain'].get('tokens_per_s'))} tokens/s logged vs `slm bench --config` "
                  f"{_fmt(bench.get('tokens_per_s'))} tokens/s (same settings)."]
    parity = steps.get("parity", {})
    if parity.get("cases"):
        tol = parity.get("tolerances", {})
        shape = ", ".join(f"{k} {v}" for k, v in parity["shape"].items())
        lines += ["", f"Parity vs the fp32 eager reference ({shape}); tolerances "
                  + ", ".join(f"{k}: loss rel ≤ {v['loss_rel']}, grad cosine ≥ {v['grad_cosine']}"
                              for k, v in tol.items()) + ":", "",
                  "| case | status | loss rel err | min grad cosine |", "| --- | --- | ---: | ---: |"]
        for c in parity["cases"]:
            lines.append(f"| {c['case']} | {c['status']} | {_fmt(c.get('loss_rel_err'), '.2e')} | "
                         f"{_fmt(c.get('min_grad_cosine'), '.5f')} |")
        if parity.get("not_available"):
            lines.append(f"\nNot run here: {len(parity['not_available'])} cases (suite.json says why).")
    profile = steps.get("profile", {})
    if profile.get("top"):
        setting = profile["setting"]
        lines += ["", f"Profile ({profile['time_kind']}), {setting['model']} {setting['option']} micro-batch "
                  f"{setting['micro_batch']}; attention kernels: {', '.join(profile['attention_kernels']) or 'none named'}:",
                  "", "| kernel | ms/step | % |", "| --- | ---: | ---: |"]
        for r in profile["top"]:
            lines.append(f"| `{r['name'][:90]}` | {r['self_ms_per_step']:.2f} | {r['percent']:.1f} |")
    memory = steps.get("memory", {})
    if memory.get("rows"):
        lines += ["", "| memory: model | micro-batch | predicted GB | measured GB |", "| --- | ---: | ---: | ---: |"]
        for r in memory["rows"]:
            lines.append(f"| {r['model']} | {r['micro_batch']} | {_fmt(r.get('predicted_peak_gb'), '.1f')} | "
                         f"{_fmt(r.get('measured_peak_gb'), '.1f')} |")
    return "\n".join(lines) + "\n"
