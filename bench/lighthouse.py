"""Lighthouse on the web UI's main pages as a phone and as a desktop, with CLS.

Performance, accessibility, best practices and the layout shift (CLS) of Status, Battery,
History, Settings and System.

The stack is real, as in the browser tests: two simulated JK-PB boards as a bank on a pty ->
reader -> Mosquitto -> history + API on loopback, the web password set (the login cookie is
sent as a header, so Settings and System are measured as the owner sees them). Lighthouse is
npm's, from bench/lighthouse/package-lock.json (not the web UI's package), driving Debian's
chromium (CHROME_PATH=/usr/bin/chromium, --headless --no-sandbox --disable-gpu). Mobile is
Lighthouse's default (a mid-range phone, simulated slow 4G and 4x CPU slowdown); desktop is its
desktop preset. Lighthouse's performance score depends on the machine and its load: the load
average is printed before and after.

Setup: npm ci --prefix bench/lighthouse
Run:   uv run python bench/lighthouse.py [--pages index battery] [--runs 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from procstat import cpu_model, loadavg  # noqa: E402
from tests.support.browser import CHROMIUM, start_bank_stack  # noqa: E402
from tests.support.procs import Mosquitto, Proc  # noqa: E402

LIGHTHOUSE = ROOT / "bench" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
PAGES = {
    "index": "Status",
    "battery": "Battery",
    "history": "History",
    "settings": "Settings",
    "system": "System",
}
CATEGORIES = ("performance", "accessibility", "best-practices")
PASSWORD = "lighthouse-bench-1"


def lighthouse(url: str, cookie: str, form: str, out: Path) -> dict[str, Any]:
    """One Lighthouse run of ``url``: the scores (0-100), CLS, LCP and TBT, failed audits."""
    # fmt: off
    command = [
        str(LIGHTHOUSE), url, "--quiet", "--output=json", f"--output-path={out}",
        f"--only-categories={','.join(CATEGORIES)}",
        "--chrome-flags=--headless --no-sandbox --disable-gpu",
        f"--extra-headers={json.dumps({'Cookie': cookie})}",
        # the Status page keeps its event stream open: the network is never quiet for long
        "--max-wait-for-load=30000",
    ]
    # fmt: on
    if form == "desktop":
        command.append("--preset=desktop")
    env = {**os.environ, "CHROME_PATH": CHROMIUM}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"lighthouse {url} ({form}): {done.stderr[-1500:]}")
    report = json.loads(out.read_text())
    audits = report["audits"]
    failed = sorted(
        key
        for category in CATEGORIES
        for ref in report["categories"][category]["auditRefs"]
        if ref["weight"] > 0
        and (key := ref["id"]) in audits
        and audits[key]["score"] is not None
        and audits[key]["score"] < 0.9
    )
    return {
        **{c: round(100 * (report["categories"][c]["score"] or 0)) for c in CATEGORIES},
        "cls": round(audits["cumulative-layout-shift"]["numericValue"], 3),
        "lcp_ms": round(audits["largest-contentful-paint"]["numericValue"]),
        "tbt_ms": round(audits["total-blocking-time"]["numericValue"]),
        "failed": failed,
        "runtime_error": report.get("runtimeError", {}).get("message"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", nargs="*", default=list(PAGES), choices=list(PAGES))
    parser.add_argument("--forms", nargs="*", default=["mobile", "desktop"])
    parser.add_argument("--runs", type=int, default=1, help="runs per page and form (median)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if not LIGHTHOUSE.exists():
        sys.exit(f"{LIGHTHOUSE} is missing: run npm ci --prefix bench/lighthouse")
    work = Path(tempfile.mkdtemp(prefix="bmsgate-bench-lighthouse-"))
    mosquitto = Mosquitto(work)
    mosquitto.start()
    procs: list[Proc] = []
    rows: list[dict[str, Any]] = []
    load_before = loadavg()
    try:
        base = start_bank_stack(work, mosquitto, procs)  # as tests/browser/test_web_walk.py
        answer = httpx.post(f"{base}/api/auth/setup", json={"password": PASSWORD}, timeout=10)
        answer.raise_for_status()
        cookie = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
        time.sleep(5)  # a few readings and a first history bucket, so the pages have data
        for page in args.pages:
            for form in args.forms:
                runs = [
                    lighthouse(
                        f"{base}/{page}.html", cookie, form, work / f"{page}-{form}-{n}.json"
                    )
                    for n in range(args.runs)
                ]
                runs.sort(key=lambda r: r["performance"])
                row = {"page": PAGES[page], "form": form, **runs[len(runs) // 2]}
                rows.append(row)
                print(
                    f"{row['page']:9} {form:8} performance {row['performance']:3}  accessibility "
                    f"{row['accessibility']:3}  best practices {row['best-practices']:3}  CLS "
                    f"{row['cls']:.3f}  LCP {row['lcp_ms']} ms  TBT {row['tbt_ms']} ms"
                    + (f"  below 90: {', '.join(row['failed'])}" if row["failed"] else ""),
                    flush=True,
                )
    finally:
        for proc in reversed(procs):
            proc.stop()
        mosquitto.stop()
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": loadavg(),
    }
    print(f"machine: {machine}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
