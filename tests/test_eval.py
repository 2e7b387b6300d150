"""hybridserve.eval: prompt generation (length, needle placement, determinism), scoring with scripted models,
perplexity against analytic values, the transformers backend on a tiny hybrid, the CLI, and bad input.

Everything runs on tiny local tokenizers and models (no corpus, no teacher download): a few seconds in all.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import typer
from typer.testing import CliRunner

from hybridserve.eval import (
    ContinuationScore,
    EvalError,
    EvalSettings,
    HFBackend,
    Haystack,
    generate_sample,
    generate_samples,
    make_haystack,
    perplexity,
    run_eval,
    run_unit,
    sliding_windows,
    string_match_all,
)
from hybridserve.eval import runner as eval_runner
from hybridserve.eval.haystack import text_haystack
from hybridserve.eval.tasks import NIAH_TASKS, RULER_TASKS, TASKS
from hybridserve.eval_cmd import eval_command
from hybridserve.export import HybridConfig, HybridForCausalLM, save_hybrid

from .helpers import tiny_tokenizer

GEN_TASKS = [t for t in TASKS if TASKS[t].kind == "generate"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ tokenizers


@pytest.fixture(scope="module")
def bpe():
    """tests/helpers.py's byte-level BPE (vocab 300, ChatML template, adds no bos)."""
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def meta():
    """A different tokenizer: SentencePiece-style Metaspace BPE, vocab 800, no byte fallback, no chat template,
    adds <s> in front of every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from hybridserve.eval import words

    rng = random.Random(0)
    corpus = [" ".join(rng.choices(words.NOUNS + words.ADJECTIVES, k=40)) + ". 0123456789 VAR = - : ?" for _ in range(200)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = [c for c in string.printable if not c.isspace()] + ["\u2581"]
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


# ------------------------------------------------------------------------------------------------ 1. generation


@pytest.mark.parametrize("tok_name, chat", [("bpe", False), ("bpe", True), ("meta", False)])
@pytest.mark.parametrize("length", [1000, 2000])
def test_prompt_lengths_within_one_percent(tok_name, chat, length, request):
    tok = request.getfixturevalue(tok_name)
    if tok_name == "meta":  # the second tokenizer adds bos: the special-token path is covered too
        assert tok("hello")["input_ids"][0] == tok.bos_token_id
    for task in TASKS:
        for s in generate_samples(task, tok, length, 2, chat=chat):
            assert length * 0.99 <= s.num_tokens <= length, (task, s.num_tokens)
            if s.prompt is not None:  # the ids are exactly the prompt's tokenisation
                assert s.input_ids == list(tok(s.prompt, add_special_tokens=not s.chat)["input_ids"])
                assert s.chat == (chat and TASKS[task].kind == "generate")
                assert s.prompt.startswith("<|im_start|>") == s.chat


@pytest.mark.parametrize("tok_name", ["bpe", "meta"])
def test_needles_are_where_stated(tok_name, request):
    tok = request.getfixturevalue(tok_name)
    for task in NIAH_TASKS + ("vt",):
        samples = generate_samples(task, tok, 1500, 3)
        for s in samples:
            assert s.needles, task
            for n in s.needles:
                assert s.prompt[n.char_start:n.char_start + len(n.text)] == n.text
                assert abs(n.token_depth - n.depth) < 0.05, (task, n.depth, n.token_depth)
                if tok_name == "bpe":  # lossless decode: the stated token is where the needle starts
                    assert tok.decode(s.input_ids[n.token_start:n.token_start + 40]).lstrip().startswith(n.text[:20])
            for answer in s.answers:  # every answer is in the prompt only inside needles
                assert any(answer in n.text for n in s.needles)
                assert s.prompt.count(answer) == sum(n.text.count(answer) for n in s.needles)
    # niah single: one needle per sample, depths spread evenly over the samples
    samples = generate_samples("niah_single_number", tok, 1500, 5)
    assert [s.needles[0].depth for s in samples] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [len(s.needles) for s in samples] == [1] * 5
    # multikey: 4 needles evenly spread, the asked key is one of them
    s = generate_sample("niah_multikey", tok, 1500, 0, num_samples=2)
    assert [round(n.depth, 3) for n in s.needles] == [0.062, 0.312, 0.562, 0.812]
    assert f"for {s.metadata['keys'][0]} mentioned" in s.prompt
    # variable tracking: the chain appears in order
    s = generate_sample("vt", tok, 1500)
    starts = [s.prompt.index(f"VAR {name} =") for name in s.answers]
    assert starts == sorted(starts) and f"VAR {s.answers[0]} = {s.metadata['value']}." in s.prompt


def test_word_tasks_and_mqar_are_well_formed(bpe, meta):
    s = generate_sample("cwe", bpe, 2000)
    entries = re.findall(r"\d+\. ([a-z]+)", s.prompt.split("\n\n")[1])
    counts = Counter(entries)
    assert len(entries) == s.metadata["entries"] + 10 * s.metadata["common_frequency"]
    assert sorted(w for w, _ in counts.most_common(10)) == sorted(s.answers)
    assert min(counts[w] for w in s.answers) > max(c for w, c in counts.items() if w not in s.answers)

    s = generate_sample("fwe", meta, 2000)
    counts = Counter(s.prompt.split("\n\n")[1].split(" ... "))
    top = [w for w, _ in counts.most_common(4)]
    assert top[:3] == s.answers and counts[top[2]] > counts[top[3]]

    for tok in (bpe, meta):
        s = generate_sample("mqar", tok, 1024)
        assert s.num_tokens == 1024 and s.kind == "token_recall"
        pairs = {}
        for n in s.needles:  # the hidden key-value pairs sit at the stated token positions
            k, v = s.input_ids[n.token_start:n.token_start + 2]
            pairs[k] = v
            assert abs(n.token_depth - n.depth) < 0.01
        assert len(pairs) == 16
        for pos, value in s.targets:  # each query: the key, then its value as the target
            assert s.input_ids[pos] == value == pairs[s.input_ids[pos - 1]]
        assert s.input_ids[:1] == ([1] if tok is meta else [s.input_ids[0]])


def test_same_seed_same_prompts(bpe):
    for task in TASKS:
        a = generate_samples(task, bpe, 800, 3, seed=7)
        b = generate_samples(task, bpe, 800, 3, seed=7)
        c = generate_samples(task, bpe, 800, 3, seed=8)
        assert [s.input_ids for s in a] == [s.input_ids for s in b]
        assert [s.answers for s in a] == [s.answers for s in b]
        assert [s.input_ids for s in a] != [s.input_ids for s in c]
        assert len({tuple(s.input_ids) for s in a}) == 3  # samples differ from each other


def test_text_haystack_and_scoring(bpe):
    text = "Alpha beta gamma. Delta epsilon! Zeta eta theta? Iota kappa lambda mu. " * 20
    hs = text_haystack(text)  # (file haystacks are tested through the CLI)
    assert hs.sentences[:3] == ["Alpha beta gamma.", "Delta epsilon!", "Zeta eta theta?"]
    assert sum(len(x.split()) for x in hs.take(11, start=1)) == 11
    s = generate_sample("niah_single_word", bpe, 600, haystack=hs)
    assert "Delta epsilon!" in s.prompt and s.answers[0] in s.prompt
    assert string_match_all("The numbers are 12 and 34.", ["12", "34", "56"]) == pytest.approx(2 / 3)
    assert string_match_all("ABC-def", ["abc-DEF"]) == 1.0 and string_match_all("", ["x"]) == 0.0


def test_corpus_haystack_and_heldout_split(bpe, tmp_path, monkeypatch):
    """The built-in corpus path on a fake corpus folder (the real one is fetched from package registries)."""
    from hybridserve.eval import haystack as hs_module
    from hybridserve.eval.perplexity import HELDOUT_FRACTION, doc_fraction, heldout_text

    docs = {"alpha": [f"Alpha document {i}. It has two sentences." for i in range(300)],
            "beta": ["Beta text. " * 30, "  "]}
    for name, texts in docs.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    monkeypatch.setattr(hs_module, "_corpus_folder", lambda: tmp_path)
    hay = make_haystack("corpus")
    assert hay.name == "corpus" and "Alpha document 0." in hay.sentences and "Beta text." in hay.sentences
    assert set(make_haystack("corpus:beta").sentences) == {"Beta text."}
    s = generate_sample("niah_single_number", bpe, 800, haystack="corpus:alpha")
    assert "Alpha document" in s.prompt and s.answers[0] in s.prompt
    held = heldout_text("corpus")
    expected = [t for t in docs["alpha"] + docs["beta"] if t.strip() and doc_fraction(t) < HELDOUT_FRACTION]
    assert expected and held == "\n\n".join(expected)  # the same documents that convert.data holds out
    with pytest.raises(EvalError, match="no source 'gamma'"):
        make_haystack("corpus:gamma")


# ------------------------------------------------------------------------------------------------ 2. scripted models


class ScriptedBackend:
    """Answers from a lookup of every prompt the generator makes (the oracle), or answers nothing."""

    def __init__(self, tokenizer, settings: EvalSettings | None, name: str, max_length: int | None = None):
        self.tokenizer, self.name, self.max_length = tokenizer, name, max_length
        self.answers = {}
        self.calls = 0
        if settings is not None:
            for task in settings.tasks:
                if task in TASKS:
                    for n in settings.lengths:
                        for s in generate_samples(task, tokenizer, n, settings.samples, seed=settings.seed,
                                                  haystack=settings.haystack, chat=settings.chat_flag):
                            self.answers[tuple(s.input_ids)] = ", ".join(s.answers)

    def generate(self, prompts, max_new_tokens):
        self.calls += 1
        return [self.answers.get(tuple(p), "") for p in prompts]

    def loglikelihood(self, requests):
        self.calls += 1
        oracle = bool(self.answers)
        return [ContinuationScore([0.0 if oracle else -5.0] * len(x), [oracle] * len(x)) for _, x in requests]


def test_oracle_scores_one_empty_scores_zero(bpe, tmp_path):
    settings = EvalSettings(tasks=list(RULER_TASKS) + ["mqar"], lengths=[1024], samples=2)
    oracle = ScriptedBackend(bpe, settings, "oracle")
    empty = ScriptedBackend(bpe, None, "empty")
    summary = run_eval([oracle, empty], settings, tmp_path, progress=False)
    assert summary["average"] == {"oracle": {"1024": 1.0}, "empty": {"1024": 0.0}}
    for row in summary["results"]:
        assert row["score"] == (1.0 if row["model"] == "oracle" else 0.0), row
    unit = json.loads((tmp_path / "results" / "oracle" / "niah_multivalue@1024.json").read_text())
    assert unit["metric"] == "string_match_all" and len(unit["samples"]) == 2
    assert unit["samples"][0]["answers"][0] in unit["samples"][0]["prediction"]
    md = (tmp_path / "results.md").read_text()
    assert "| oracle | 1.000 |" in md and "| empty | 0.000 |" in md and "| mqar | 1.000 | 0.000 |" in md
    assert json.loads((tmp_path / "results.json").read_text())["average"] == summary["average"]
    if summary["files"]["plot"]:
        assert (tmp_path / "scores.png").stat().st_size > 1000


def test_resume_per_unit_and_lazy_loading(bpe, tmp_path, monkeypatch):
    settings = EvalSettings(tasks=["niah_single_number", "fwe"], lengths=[1024], samples=2)
    loads = []

    def fake_load(spec, **kwargs):
        loads.append(spec)
        return ScriptedBackend(bpe, settings, kwargs["name"])

    monkeypatch.setattr(eval_runner, "load_backend", fake_load)
    first = run_eval(["m1"], settings, tmp_path, progress=False, plot=False)
    assert loads == ["m1"] and first["average"]["m1"]["1024"] == 1.0
    again = run_eval(["m1"], settings, tmp_path, progress=False, plot=False)  # all done: the model is not loaded
    assert loads == ["m1"] and again["results"] == first["results"]
    (tmp_path / "results" / "m1" / "fwe@1024.json").unlink()  # one unit missing: only it is redone
    before = (tmp_path / "results" / "m1" / "niah_single_number@1024.json").stat().st_mtime_ns
    run_eval(["m1"], settings, tmp_path, progress=False, plot=False)
    assert loads == ["m1", "m1"] and (tmp_path / "results" / "m1" / "fwe@1024.json").exists()
    assert (tmp_path / "results" / "m1" / "niah_single_number@1024.json").stat().st_mtime_ns == before
    changed = EvalSettings(tasks=["niah_single_number", "fwe"], lengths=[1024], samples=3)  # other settings: redo
    run_eval(["m1"], changed, tmp_path, progress=False, plot=False)
    assert len(loads) == 3


# ------------------------------------------------------------------------------------------------ 3. perplexity


class FixedLM(torch.nn.Module):
    """Next-token log-probabilities from a table: `table[previous token]` (a bigram model), or one row for all."""

    def __init__(self, logprobs: torch.Tensor, max_positions: int = 10_000):
        super().__init__()
        self.table = logprobs if logprobs.dim() == 2 else logprobs[None]
        self.config = SimpleNamespace(max_position_embeddings=max_positions)
        self.longest = 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None, logits_to_keep=0, **kw):
        self.longest = max(self.longest, input_ids.shape[1])
        rows = input_ids if self.table.shape[0] > 1 else torch.zeros_like(input_ids)
        logits = self.table[rows] + 3.0  # an offset: log_softmax must normalise
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def test_perplexity_uniform_is_vocab_size():
    V = 37
    backend = HFBackend(FixedLM(torch.zeros(V)), name="uniform")
    ids = torch.randint(0, V, (500,), generator=torch.Generator().manual_seed(0)).tolist()
    for window, stride in ((600, None), (64, 16), (2, 1)):
        result = perplexity(backend, ids, window, stride)
        assert result.ppl == pytest.approx(V, rel=1e-5) and result.tokens == 499


def test_perplexity_of_known_categorical():
    p = torch.tensor([0.5, 0.25, 0.125, 0.125])
    backend = HFBackend(FixedLM(p.log()), name="categorical")
    ids = [0] * 400 + [1] * 200 + [2] * 100 + [3] * 100
    random.Random(0).shuffle(ids)
    result = perplexity(backend, ids, 128, 32, prefix=[0])  # every text token scored (after a prefix)
    assert result.tokens == 800
    assert result.ppl == pytest.approx(2 ** 1.75, rel=1e-5)  # exp(entropy) = 2^H, H = 1.75 bits


def test_perplexity_sliding_window_bigram():
    V = 11
    gen = torch.Generator().manual_seed(0)
    logT = torch.log_softmax(torch.randn(V, V, generator=gen) * 2, dim=-1)
    model = FixedLM(logT)
    backend = HFBackend(model, name="bigram", batch_size=3)
    ids = torch.randint(0, V, (300,), generator=gen).tolist()
    analytic = math.exp(-sum(logT[a, b].item() for a, b in zip(ids, ids[1:])) / (len(ids) - 1))
    full = perplexity(backend, ids, 400)
    assert full.windows == 1 and full.ppl == pytest.approx(analytic, rel=1e-5)
    for window, stride in ((16, 5), (16, 15), (50, 1), (7, None)):
        model.longest = 0
        result = perplexity(backend, ids, window, stride)
        assert result.ppl == pytest.approx(analytic, rel=1e-5) and result.tokens == len(ids) - 1
        assert model.longest == window  # never more context than the window
    spans = sliding_windows(100, 16, 5)
    scored = [t for _, f, e in spans for t in range(f, e)]
    assert scored == list(range(1, 100))  # each token exactly once
    assert all(e - s <= 16 and s <= f for s, f, e in spans) and spans[1] == (5, 16, 21)
    with pytest.raises(EvalError, match="stride"):
        sliding_windows(100, 16, 16)


# ------------------------------------------------------------------------------------------------ 4. HF backend


def tiny_hybrid(tok, seed=0, max_positions=1024):
    torch.manual_seed(seed)
    config = HybridConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=max_positions,
        layer_types=["full_attention", "linear_attention"], pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.1,
    )
    return HybridForCausalLM(config).eval()


def test_hf_backend_batched_equals_unbatched_on_tiny_hybrid(bpe):
    model = tiny_hybrid(bpe)
    prompts = [generate_sample(t, bpe, n, chat=False).input_ids
               for t, n in (("niah_single_number", 400), ("vt", 450), ("niah_single_word", 350), ("niah_multikey", 500))]
    one = HFBackend(model, bpe, name="tiny", batch_size=1)
    four = HFBackend(model, bpe, name="tiny", batch_size=4)
    assert len({len(p) for p in prompts}) == 4  # different lengths: the batch is left padded
    out1, out4 = one.generate(prompts, 12), four.generate(prompts, 12)
    assert out1 == out4 and all(out1)
    # a text prompt is tokenised like the generator does
    assert one.generate([bpe.decode(prompts[0])], 12) == out1[:1]
    reqs = [(p[:-20], p[-20:]) for p in prompts]
    s1, s4 = one.loglikelihood(reqs), four.loglikelihood(reqs)
    for a, b in zip(s1, s4):
        assert a.greedy == b.greedy
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4)
    # loglikelihood agrees with a plain forward pass
    p = prompts[1]
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([p])).logits[0, -21:-1], -1)
    assert torch.allclose(torch.tensor(s1[1].logprobs), ref.gather(-1, torch.tensor(p[-20:])[:, None])[:, 0], atol=1e-4)
    # whole units score the same batched and unbatched
    settings = EvalSettings(tasks=["niah_single_number", "mqar"], lengths=[400], samples=3, max_new_tokens=8)
    for task in settings.tasks:
        a, b = run_unit(one, settings, task, 400), run_unit(four, settings, task, 400)
        assert [r.get("prediction", r.get("hits")) for r in a["samples"]] == \
               [r.get("prediction", r.get("hits")) for r in b["samples"]]


# ------------------------------------------------------------------------------------------------ 5. CLI


@pytest.fixture(scope="module")
def hybrid_dir(tmp_path_factory, bpe):
    return save_hybrid(tiny_hybrid(bpe, max_positions=640), tmp_path_factory.mktemp("ckpt") / "tiny-hybrid",
                       tokenizer=bpe)


def cli(*args):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("eval")(eval_command)
    app.command("other")(lambda: None)  # two commands: "eval" is then a sub-command, as in the real app
    result = CliRunner().invoke(app, ["eval", *map(str, args)])
    return result.exit_code, result.output


def test_cli_end_to_end_and_resume(hybrid_dir, tmp_path):
    text = tmp_path / "heldout.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 80)
    out = tmp_path / "eval"
    args = [hybrid_dir, "--tasks", "niah_single_number,mqar,ppl", "--lengths", "320,512", "--samples", "2",
            "--max-new-tokens", "6", "--ppl-text", text, "--ppl-tokens", "600", "--out", out, "--no-progress"]
    code, output = cli(*args)
    assert code == 0, output
    summary = json.loads((out / "results.json").read_text())
    assert summary["models"][0]["label"] == "tiny-hybrid" and set(summary["average"]["tiny-hybrid"]) == {"320", "512"}
    ppl = [r for r in summary["results"] if r["task"] == "ppl"]
    assert len(ppl) == 2 and all(math.isfinite(r["score"]) and r["score"] > 1 for r in ppl)  # random weights
    assert "| task | 320 | 512 |" in output and "Perplexity on" in output
    assert (out / "results" / "tiny-hybrid" / "mqar@512.json").exists()
    code, output = cli(*args)
    assert code == 0 and "resuming: 6 of 6 results" in output


@pytest.mark.parametrize("args, message", [
    (["--lengths", "1024"], "exceeds the 640 positions"),
    (["--tasks", "niah_single_number,needle_in_a_sock"], "unknown task(s) 'needle_in_a_sock'"),
    (["--suite", "rulr"], "unknown suite 'rulr'"),
    (["--haystack", "EMPTY"], "haystack 'file:empty.txt' is empty"),
    (["--haystack", "no/such/file.txt"], "unknown haystack"),
    (["--lengths", "1K,two"], "--lengths must be"),
    (["--chat", "maybe"], "chat must be auto, on or off"),
])
def test_cli_bad_inputs(hybrid_dir, tmp_path, args, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    code, output = cli(hybrid_dir, "--samples", "1", "--out", tmp_path / "o", "--no-progress", *args)
    assert code == 1 and message in " ".join(output.split()), output
    assert "Traceback" not in output


def test_bad_inputs_in_the_api(bpe):
    with pytest.raises(EvalError, match="unknown task"):
        generate_sample("nope", bpe, 512)
    with pytest.raises(EvalError, match="too short for task"):
        generate_sample("niah_multiquery", bpe, 40)
    with pytest.raises(EvalError, match="empty"):
        generate_sample("niah_single_number", bpe, 512, haystack=Haystack("x", [" "]))
    with pytest.raises(EvalError, match="exceeds"):
        backend = ScriptedBackend(bpe, None, "small", max_length=600)
        run_eval([backend], EvalSettings(tasks=["niah_single_number"], lengths=[512, 600], samples=1), "/nonexistent",
                 progress=False)
    with pytest.raises(EvalError, match="no models"):
        run_eval([], EvalSettings(tasks=["vt"], lengths=[512]), "/tmp/x", progress=False)
    with pytest.raises(EvalError, match="chat template"):
        generate_sample("vt", _NoTemplate(bpe), 512, chat=True)


class _NoTemplate:
    """The tiny tokenizer without its chat template."""

    def __init__(self, tok):
        self._tok = tok
        self.chat_template = None

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *a, **k):
        return self._tok(*a, **k)
