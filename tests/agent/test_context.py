"""Fitting a long session into a small window without losing the task."""

from __future__ import annotations

from mimiverse.agent.context import ContextBuilder, History, estimate_tokens


def long_history(steps: int) -> History:
    history = History()
    history.add({"role": "user", "content": "THE TASK: fix the parser"}, pinned=True)
    for n in range(1, steps + 1):
        history.add(
            {"role": "assistant", "content": f'{{"tool": "read_file", "n": {n}}}'},
            step=n,
            note=f"step {n}: read_file",
        )
        history.add({"role": "user", "content": "x" * 3000}, step=n, note=f"  → ok: file {n}")
    return history


def test_folds_old_steps_into_a_summary_and_keeps_the_task() -> None:
    history = long_history(30)
    window = ContextBuilder(budget_tokens=4000).build("system prompt", history)
    assert window.folded > 0
    assert window.tokens <= 4000
    texts = [m["content"] for m in window.messages]
    assert texts[1] == "THE TASK: fix the parser"
    assert "Summary of your earlier steps" in texts[2]
    assert "step 1: read_file" in texts[2]
    # The newest steps are still there in full.
    assert '"n": 30' in texts[-2]


def test_later_user_messages_are_pinned_too() -> None:
    history = long_history(10)
    history.add({"role": "user", "content": "ALSO: keep the API"}, pinned=True)
    for n in range(11, 30):
        history.add({"role": "assistant", "content": "{}"}, step=n, note=f"step {n}")
        history.add({"role": "user", "content": "y" * 3000}, step=n)
    window = ContextBuilder(budget_tokens=3000).build("sys", history)
    contents = [m["content"] for m in window.messages]
    assert "ALSO: keep the API" in contents and "THE TASK: fix the parser" in contents


def test_a_single_huge_observation_is_cut_in_the_middle() -> None:
    history = History()
    history.add({"role": "user", "content": "task"}, pinned=True)
    history.add({"role": "assistant", "content": "{}"}, step=1)
    history.add({"role": "user", "content": "HEAD" + "z" * 100_000 + "TAIL"}, step=1)
    window = ContextBuilder(budget_tokens=2000).build("sys", history)
    last = window.messages[-1]["content"]
    assert last.startswith("HEAD") and last.endswith("TAIL") and "characters cut" in last
    assert sum(estimate_tokens(m["content"]) for m in window.messages) <= 2000 + 50
