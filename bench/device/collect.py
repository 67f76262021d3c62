"""Merges bench/device/run.sh's pieces into one JSON of figures:
  python3 collect.py OUT.json --meta meta.json --ours ours.jsonl --torch torch.jsonl
         --tests tests.log [--sanitizer sanitizer.log]
and adds the side-by-side ratios the goals are stated in: GEMM ours/torch TFLOP/s per size,
AdamW torch_ms/ours_ms, and AdamW and the paged decode as fractions of copy bandwidth. Missing
pieces are recorded as missing, never invented."""
import argparse
import json
import re
import sys


def read_lines(path):
    rows = []
    if not path:
        return rows
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except FileNotFoundError:
        pass
    return rows


def summary_of(path):
    try:
        text = open(path).read()
    except (FileNotFoundError, TypeError):
        return None
    m = re.findall(r"(\d+) passed, (\d+) failed, (\d+) skipped", text)
    if not m:
        return {"ran": False, "tail": text[-2000:]}
    p, f, s = (int(x) for x in m[-1])
    return {"ran": True, "passed": p, "failed": f, "skipped": s, "failures": re.findall(r"^FAIL .*$", text, re.M)}


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--meta")
    ap.add_argument("--ours")
    ap.add_argument("--torch")
    ap.add_argument("--tests")
    ap.add_argument("--sanitizer")
    a = ap.parse_args(argv)
    meta = {}
    if a.meta:
        try:
            meta = json.load(open(a.meta))
        except (FileNotFoundError, json.JSONDecodeError) as e:
            meta = {"error": str(e)}
    ours = [r for r in read_lines(a.ours) if r.get("impl") == "rlhf"]
    torch_rows = read_lines(a.torch)
    peer = [r for r in torch_rows if r.get("impl") == "torch" and not r.get("meta")]
    find = lambda rows, bench, shape=None: next((r for r in rows if r["bench"] == bench and (shape is None or r["shape"] == shape)), None)
    ratios = {}
    for r in ours:
        if r["bench"] == "gemm_bf16":
            t = find(peer, "gemm_bf16", r["shape"])
            if t:
                ratios[f"gemm_bf16 {r['shape']} ours/torch"] = r["value"] / t["value"]
    ours_step, torch_step = find(ours, "adamw_step"), find(peer, "adamw_step")
    ours_copy = find(ours, "copy_d2d")
    if ours_step and torch_step:
        ratios["adamw_step torch_ms/ours_ms"] = torch_step["median_ms"] / ours_step["median_ms"]
    if ours_copy:
        for b in ("adamw_update", "adamw_step", "attention_paged_decode_f32", "attention_paged_decode_bf16"):
            r = find(ours, b)
            if r:
                ratios[f"{b} GB/s / copy GB/s"] = r["value"] / ours_copy["value"]
    doc = {
        "meta": meta,
        "torch_meta": next((r for r in torch_rows if r.get("meta")), None),
        "tests_on_device": summary_of(a.tests),
        "tests_under_compute_sanitizer": summary_of(a.sanitizer) if a.sanitizer else None,
        "ours": ours,
        "torch": peer,
        "ratios": ratios,
        "goals": {"gemm ours/torch >=": 0.9, "adamw torch_ms/ours_ms >=": 1.0, "adamw / copy bandwidth >=": 0.85},
    }
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(json.dumps(ratios, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
