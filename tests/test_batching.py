import io

from simexplain import batching


def test_chunks_cover_the_range_in_bounded_slices():
    parts = list(batching.chunk_slices(10, 4))
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 8), (8, 10)]
    assert list(batching.chunk_slices(0, 4)) == []


def test_progress_bars_are_off_unless_asked_for(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    list(batching.chunk_slices(10, 2))
    assert stderr.getvalue() == ""  # a library call prints nothing
    with batching.progress_bars():
        list(batching.chunk_slices(10, 2, desc="occluding"))
    shown = stderr.getvalue()
    assert "occluding" in shown
    list(batching.chunk_slices(10, 2))  # and the switch is reset on leaving the context
    assert stderr.getvalue() == shown


def test_batch_size_defaults_by_device_and_is_validated():
    import pytest

    from simexplain import SimexplainError

    assert batching.resolve_batch_size(None, "cpu") == batching.CPU_BATCH_SIZE
    assert batching.resolve_batch_size(None, "cuda:0") == batching.GPU_BATCH_SIZE
    assert batching.resolve_batch_size(5, "cpu") == 5
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(SimexplainError, match="batch_size"):
            batching.resolve_batch_size(bad, "cpu")
