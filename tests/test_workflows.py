"""The workflows: exact node counts, results equal to their references, on every runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dagrt
from dagrt import workflows
from dagrt.metrics import FlushPolicy, TaskExecutionMetrics

CASES: list[tuple[str, dict[str, Any]]] = [
    ("tree_reduction", {"n": 1024}),  # a power of two
    ("tree_reduction", {"n": 1000}),  # and not
    ("tree_reduction", {"n": 1}),
    ("gemm", {"n": 60, "b": 3, "seed": 1}),
    ("wordcount", {"words": 5000, "chunks": 7, "seed": 2}),
    ("image_transform", {"height": 70, "width": 90, "tiles": 3, "seed": 3}),
    ("svd1", {"m": 1500, "n": 12, "blocks": 5, "seed": 4}),  # an odd number of blocks
    ("svd2", {"n": 300, "k": 8, "blocks": 3, "power": 2, "seed": 5}),
]


@pytest.mark.parametrize(
    ("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
async def test_a_workflow_gives_its_reference(
    any_client: dagrt.Client, name: str, params: dict[str, Any]
) -> None:
    flow = workflows.get(name)
    node = flow.build(**params)
    assert len(dagrt.DAG(node)) == flow.n_tasks(**params)
    result = await any_client.compute(node)
    assert flow.check(result, flow.reference(**params))


def test_tree_reduction_is_exact() -> None:
    flow = workflows.get("tree_reduction")
    assert dagrt.compute(flow.build(n=777), processes=False) == sum(range(777))


def test_wordcount_counts_every_word_of_a_file(tmp_path: Path) -> None:
    flow = workflows.get("wordcount")
    text = tmp_path / "text.txt"
    text.write_text("The cat and the hat.\nA cat's hat!\n\nthe end\n")
    result = dagrt.compute(flow.build(path=text, chunks=3), processes=False)
    assert result == {"the": 3, "cat": 1, "and": 1, "hat": 2, "a": 1, "cat's": 1, "end": 1}
    assert result == flow.reference(path=text, chunks=3)


def test_image_transform_reads_a_file(tmp_path: Path) -> None:
    from PIL import Image

    flow = workflows.get("image_transform")
    img = flow.make_image(40, 50, seed=9)
    path = tmp_path / "in.png"
    Image.fromarray(img).save(path)
    result = dagrt.compute(flow.build(path=path, tiles=2), processes=False)
    assert result.shape == (40, 50)
    assert np.allclose(result, flow.pipeline(img), atol=1e-3)


def test_svd_singular_values_match_numpy() -> None:
    svd1, svd2 = workflows.get("svd1"), workflows.get("svd2")
    _, s, _ = dagrt.compute(svd1.build(m=900, n=10, blocks=3), processes=False)
    assert np.allclose(s, np.linalg.svd(svd1.matrix(900, 10, 3, 0), compute_uv=False))
    _, s2, _ = dagrt.compute(svd2.build(n=240, k=6, blocks=2, power=1), processes=False)
    assert np.allclose(s2, np.linalg.svd(svd2.matrix(240, 2, 0), compute_uv=False)[:6])


def test_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown workflow"):
        workflows.get("nope")
    with pytest.raises(ValueError, match="n >= 1"):
        workflows.get("tree_reduction").build(n=0)
    with pytest.raises(ValueError, match="divisible"):
        workflows.get("gemm").build(n=10, b=3)
    with pytest.raises(ValueError, match="tall and skinny"):
        workflows.get("svd1").build(m=10, n=10, blocks=2)
    with pytest.raises(ValueError, match="svd2 needs"):
        workflows.get("svd2").build(n=20, k=10, blocks=2)


async def test_three_workflows_at_once_really_interleave(pool: Any) -> None:
    """wordcount, image_transform and gemm as futures on one client: all correct, and the
    event log shows their tasks overlapping in time."""
    chosen = {  # (large enough that no run is over before the others have begun)
        "wordcount": {"words": 300_000, "chunks": 12, "seed": 1},
        "image_transform": {"height": 600, "width": 600, "tiles": 4, "seed": 1},
        "gemm": {"n": 600, "b": 3, "seed": 1},
    }
    async with dagrt.Client(pool.url, flush=FlushPolicy(interval=0.2)) as client:
        futs = {name: client.submit(workflows.get(name).build(**p)) for name, p in chosen.items()}
        results = await client.gather(list(futs.values()))
    for (name, params), result in zip(chosen.items(), results, strict=True):
        assert workflows.get(name).check(result, workflows.get(name).reference(**params))
    from helpers import wait_for_events

    from dagrt.storage import RedisStorage

    storage = RedisStorage(pool.url)
    spans = {}
    for name, fut in futs.items():
        n = workflows.get(name).n_tasks(**chosen[name])
        events = await wait_for_events(
            storage,
            fut.run_id,
            lambda es, n=n: sum(isinstance(e, TaskExecutionMetrics) for e in es) >= n,
        )
        done = [e for e in events if isinstance(e, TaskExecutionMetrics)]
        spans[name] = (min(e.start for e in done), max(e.end for e in done))
    await storage.aclose()
    starts = [s for s, _ in spans.values()]
    ends = [e for _, e in spans.values()]
    assert max(starts) < min(ends)  # every run started before any of them ended


@pytest.mark.parametrize("name", ["gemm", "image_transform", "svd1", "svd2"])
def test_the_checks_reject_an_answer_with_a_block_out_of_place(name: str) -> None:
    """Tolerances are for floating point and sketching error, not for a misplaced block."""
    import numpy as np

    flow = workflows.get(name)
    expected = flow.reference(**flow.DEFAULTS)
    first = expected[0] if isinstance(expected, tuple) else expected
    wrong = np.array(first, copy=True)
    half = wrong.shape[0] // 2
    wrong[:half], wrong[half : 2 * half] = first[half : 2 * half], first[:half]
    assert flow.check(expected, flow.reference(**flow.DEFAULTS))
    answer = (wrong, *expected[1:]) if isinstance(expected, tuple) else wrong
    assert not flow.check(answer, expected)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 33])
def test_pairwise_combines_every_item_once_in_order(n: int) -> None:
    calls: list[tuple[str, str]] = []

    def join(a: str, b: str) -> str:
        calls.append((a, b))
        return a + b

    items = [chr(ord("a") + i) for i in range(n)]
    assert workflows.pairwise(join, items) == "".join(items)
    assert len(calls) == n - 1
    with pytest.raises(ValueError, match="at least one"):
        workflows.pairwise(join, [])
