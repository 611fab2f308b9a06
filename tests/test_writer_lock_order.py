"""SQLite: the writers of one process take the database's write lock in the order they asked for it
(cdp/storage/database.py ``FifoLock``). With ``threading.Lock`` a writer that asked just as the lock
was given back — or the one giving it back, asking again — went first: of 8 clients' single-record
POSTs the slowest 1 % were passed over 2–4 times each (bench/RESULTS.md, session 16)."""

from __future__ import annotations

import threading
import time

from cdp.storage.database import FifoLock, create_engine, write_transaction


def test_writers_take_the_write_lock_in_the_order_they_asked(tmp_path):
    from cdp.storage.database import _writer_lock

    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    order: list[int] = []

    def writer(n: int) -> None:
        with write_transaction(engine) as connection:
            connection.exec_driver_sql("SELECT 1")
            order.append(n)

    lock = _writer_lock(engine)  # what write_transaction waits on before BEGIN IMMEDIATE
    assert lock.acquire()
    threads = []
    for n in range(4):
        threads.append(threading.Thread(target=writer, args=(n,)))
        threads[-1].start()
        time.sleep(0.1)  # queued in this order
    lock.release()
    # a writer asking the moment the lock is given back does not pass the four already waiting
    barged = lock.acquire(blocking=False)
    if barged:
        lock.release()
    for thread in threads:
        thread.join(10)
    engine.dispose()
    assert not barged
    assert order == [0, 1, 2, 3]


def test_a_fifo_lock_waiter_that_times_out_leaves_the_queue():
    lock = FifoLock()
    assert lock.acquire()
    assert not lock.acquire(timeout=0.05)
    assert not lock.acquire(blocking=False)
    lock.release()
    assert not lock.locked()
    assert lock.acquire(timeout=0.05)  # free: the timed-out waiter is not handed it
    lock.release()
