"""FIM templates: detection per family (tokenizer, names), rendering, the no-FIM guardrail."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mimiverse.errors import UpstreamError
from mimiverse.gateway import fim_templates
from mimiverse.gateway.backends.embedded import EmbeddedBackend
from mimiverse.gateway.base import FimFile, FimRequest
from mimiverse.gateway.gguf import GgufError, read_meta

# The FIM control tokens each family's tokenizer carries (as GGUF vocabularies spell them).
VOCABS = {
    "qwen": ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>", "<|repo_name|>"],
    "codegemma": ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"],
    "starcoder2": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>"],
    "starcoder": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<filename>"],
    "deepseek": ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>"],
    "codellama": ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"],
    "codestral": ["[PREFIX]", "[SUFFIX]", "[MIDDLE]", "[INST]"],
}


def write_gguf(path: Path, name: str, tokens: list[str]) -> Path:
    """A GGUF v3 file with metadata only (general.name, an int, the token list)."""

    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    kv = [
        string("general.name") + struct.pack("<I", 8) + string(name),
        string("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32),
        string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, len(tokens))
        + b"".join(string(t) for t in tokens),
        string("tokenizer.ggml.scores")
        + struct.pack("<IIQ", 9, 6, len(tokens))
        + struct.pack(f"<{len(tokens)}f", *([0.0] * len(tokens))),
    ]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv))
    return path


@pytest.mark.parametrize("family", sorted(VOCABS))
def test_family_detected_from_tokenizer(family: str) -> None:
    vocab = ["hello", "Ġworld", "<|endoftext|>", *VOCABS[family]]
    template = fim_templates.detect_vocab(vocab)
    assert template is not None and template.family == family


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("Qwen2.5-Coder-7B-Instruct", "qwen"),
        ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "qwen"),
        ("bigcode/starcoder2-3b", "starcoder2"),
        ("bigcode/starcoderbase-1b", "starcoder"),
        ("deepseek-coder-1.3b-base", "deepseek"),
        ("codellama-7b.Q4_K_M.gguf", "codellama"),
        ("codestral-22b", "codestral"),
        ("codegemma-2b", "codegemma"),
    ],
)
def test_family_detected_from_names(name: str, family: str) -> None:
    template = fim_templates.detect(name)
    assert template is not None and template.family == family


def test_no_fim_tokens_no_family() -> None:
    assert fim_templates.detect_vocab(["<s>", "</s>", "<|im_start|>", "[INST]"]) is None


def test_gguf_metadata_read_without_the_tensors(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", "Tiny Coder", ["a", "<|fim_prefix|>", "[PAD1]", "b"])
    meta = read_meta(path)
    assert meta.name == "Tiny Coder"
    assert meta.tokens == {"<|fim_prefix|>", "[PAD1]"}  # control-like pieces only
    (tmp_path / "bad.gguf").write_bytes(b"GGML....")
    with pytest.raises(GgufError, match="not a GGUF"):
        read_meta(tmp_path / "bad.gguf")


def test_model_without_fim_tokens_is_refused_for_fim(tmp_path: Path) -> None:
    """A chat model's GGUF has no FIM tokens: the fim task is refused, naming the fix."""
    path = write_gguf(tmp_path / "qwen-chat.gguf", "Some Chat 1B", ["<s>", "</s>", "<|im_start|>"])
    backend = EmbeddedBackend("embedded-fim", path, tasks=("fim",), context_length=512)
    backend._detect_template(path)  # what load() does before starting the engine
    assert backend.capabilities.fim is False
    with pytest.raises(UpstreamError) as err:
        backend.fim_prompt(FimRequest(prefix="x = "))
    message = err.value.message
    assert "no fill-in-the-middle tokens" in message and "cannot serve task 'fim'" in message
    assert "MIMI_FIM_MODEL_FILE" in message and "fim_template" in message


def test_model_with_fim_tokens_gets_its_family(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "unnamed.gguf", "Mystery", ["x", *VOCABS["deepseek"]])
    backend = EmbeddedBackend("embedded-fim", path, tasks=("fim",), context_length=512)
    backend._detect_template(path)
    assert backend.capabilities.fim and backend.capabilities.fim_template == "deepseek"
    prompt, stop = backend.fim_prompt(FimRequest(prefix="a", suffix="b"))
    assert prompt == "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>"
    assert "<｜end▁of▁sentence｜>" in stop


def test_repo_level_format_for_qwen() -> None:
    template = fim_templates.get("qwen")
    files = [FimFile("pkg/util.py", "def helper(x):\n    return x", "# pkg/util.py")]
    prompt = template.render(
        "import pkg\n", "\nprint(1)\n", files, repo="demo", path="main.py", middle="y = he"
    )
    assert prompt == (
        "<|repo_name|>demo\n<|file_sep|>pkg/util.py\ndef helper(x):\n    return x\n"
        "<|file_sep|>main.py\n<|fim_prefix|>import pkg\n<|fim_suffix|>\nprint(1)\n"
        "<|fim_middle|>y = he"
    )


def test_families_without_repo_tokens_get_commented_paths() -> None:
    template = fim_templates.get("codellama")
    files = [FimFile("lib.js", "function f() {}", "// lib.js")]
    prompt = template.render("a", "b", files, repo="demo", path="main.js")
    assert prompt == "// lib.js\nfunction f() {}\n\n<PRE> a <SUF>b <MID>"


def test_braces_and_placeholders_in_code_survive() -> None:
    template = fim_templates.get("qwen")
    prompt = template.render("d = {'{suffix}': 1}", "{prefix}")
    assert prompt == "<|fim_prefix|>d = {'{suffix}': 1}<|fim_suffix|>{prefix}<|fim_middle|>"


@pytest.mark.model
def test_bundled_model_tokenizer_says_qwen(fim_gguf: Path) -> None:
    meta = read_meta(fim_gguf)
    template = fim_templates.detect_vocab(meta.tokens)
    assert template is not None and template.family == "qwen"
