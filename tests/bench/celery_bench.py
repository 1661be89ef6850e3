#!/usr/bin/python3
"""Celery 5 (Debian python3-celery) doing what kanband does, for kanban_bench.

    celery_bench.py --broker amqp://guest:guest@127.0.0.1:PORT// --tasks N --dir DIR [--concurrency C]

Publishes N no-op tasks of 256 bytes to a fresh queue (a backlog), then
starts a prefork worker (`celery worker`, C processes, default one per
core) with acks_late, so a task is acknowledged after it ran, as kanband
acks after the handler. Every finished task appends its end time to a
file; the rate is (N - 1) / (last end - first end), which leaves the
worker's start-up out. Prints `celery_items_per_second <rate>`.

Imported by the worker as module `celery_bench` (the app and the task).
"""

import argparse
import os
import signal
import subprocess
import sys
import time

from celery import Celery
from celery.signals import worker_process_init

app = Celery("celery_bench", broker=os.environ.get("KANBAN_BENCH_BROKER", "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_acks_late=True,            # ack after the task ran, as kanband does
    task_default_queue="celery_bench",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_done_fd = None


@worker_process_init.connect
def _open_done_file(**_):
    global _done_fd
    _done_fd = os.open(os.environ["KANBAN_BENCH_DONE_FILE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


@app.task(name="bench.noop")
def noop(payload):
    os.write(_done_fd, b"%.6f\n" % time.time())


def lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    a = p.parse_args()

    done_file = os.path.join(a.dir, "celery-done.txt")
    if os.path.exists(done_file):
        os.remove(done_file)
    app.conf.broker_url = a.broker
    payload = "x" * 256
    with app.producer_or_acquire() as producer:
        for _ in range(a.tasks):
            noop.apply_async((payload,), producer=producer)

    env = dict(os.environ, KANBAN_BENCH_BROKER=a.broker, KANBAN_BENCH_DONE_FILE=done_file,
               PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    log = open(os.path.join(a.dir, "celery-worker.log"), "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_bench", "worker", "--pool", "prefork",
         "--concurrency", str(a.concurrency), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=a.dir)
    deadline = time.time() + 600
    try:
        while len(lines(done_file)) < a.tasks and time.time() < deadline and worker.poll() is None:
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    ends = sorted(float(x) for x in lines(done_file))
    if len(ends) < a.tasks or ends[-1] <= ends[0]:
        print(f"celery_bench: {len(ends)} of {a.tasks} tasks finished; see {a.dir}/celery-worker.log", file=sys.stderr)
        return 1
    print(f"celery_items_per_second {(len(ends) - 1) / (ends[-1] - ends[0]):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
