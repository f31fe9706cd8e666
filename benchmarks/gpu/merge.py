"""Gathers the parts of benchmarks/gpu/run.sh into one JSON: each part's figures (or null
where it failed or ran out of time), its exit status and seconds, and what was measured
on. Exits 1 when a part failed, after writing everything that came back."""

import datetime
import json
import os
import sys


def main(parts_dir, output, smoke):
    parts = {}
    with open(os.path.join(parts_dir, "status.tsv")) as handle:
        for line in handle:
            name, rc, seconds = line.rstrip("\n").split("\t")
            path = os.path.join(parts_dir, f"{name}.json")
            figures = None
            if os.path.exists(path):
                with open(path) as figures_file:
                    figures = json.load(figures_file)
            status = "ok" if rc == "0" else ("timed out" if rc in ("124", "137") else "failed")
            parts[name] = {
                "status": status,
                "exit": int(rc),
                "seconds": int(seconds),
                **({"figures": figures}),
            }
    machine = next((p["figures"]["machine"] for p in parts.values() if p["figures"]), None)
    payload = {
        "benchmark": "gpu",
        "cpu_smoke": smoke == "1",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "parts": parts,
    }
    with open(output, "w") as handle:
        json.dump(payload, handle, indent=1)
    for name, part in parts.items():
        print(f"{name}: {part['status']} (exit {part['exit']}, {part['seconds']}s)")
    print(f"wrote {output}")
    return 0 if all(p["status"] == "ok" for p in parts.values()) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
