"""The local engine: results in the order of the units, and units pulled only a window ahead."""

import threading

from sltdata.engine import LocalEngine


def test_local_engine_keeps_order_and_pulls_units_a_window_ahead():
    pulled = []
    release = threading.Event()

    def units():
        for i in range(100):
            pulled.append(i)
            yield (i,)

    def square(i):
        release.wait(5)
        return i * i

    results = LocalEngine(workers=2).map(square, units())
    timer = threading.Timer(0.2, release.set)
    timer.start()
    first = next(results)
    assert first == 0
    assert len(pulled) <= 4 * 2 + 1  # a window of four units per worker, not all 100
    assert [first, *results] == [i * i for i in range(100)]
    assert len(pulled) == 100
