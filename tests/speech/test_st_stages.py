"""The speech-translation stages end to end on a tiny synthetic corpus: corpus -> vocab -> features ->
NAST and AR training -> comparison, plus a real-MuST-C root that is valid and one that is not."""
from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from alignflow.runtime.errors import AlignflowError, ParamsError
from alignflow.runtime.stage import StageContext, StagePaths, parse_stage_args
from stages import speech_corpus, speech_features, speech_vocab, st_compare, st_train

TINY_MODEL = {"d_model": 32, "n_heads": 2, "ffn_dim": 64, "subsample_channels": 32, "acoustic_layers": 2,
              "textual_layers": 2, "src_ctc_layers": [1], "tgt_ctc_layers": [1], "cross_layer_from": 1,
              "conv_kernel": 5, "dropout": 0.0, "self_attn_drop": 0.0}
TRAIN = {"lr": 0.003, "warmup_steps": 2, "max_steps": 10, "batch_size": 1, "log_every": 5, "eval_every": 5,
         "checkpoint_every": 0, "time_budget_s": 30}
PARAMS = {
    "seed": 0, "profile": "unit", "speech_seed": 1,
    "speech": {"mustc_root": None, "lang": "de", "seed": 0, "n_train": 40, "n_dev": 8, "n_test": 8, "reorder": True,
               "voices": ["en-us", "en"], "rates": [175], "pitches": [50], "segments_per_talk": 10,
               "vocab_size": 120},
    "st": {"threads": 1,
           "nast": {"model": {**TINY_MODEL, "curriculum": True}, "bucket_size": 8, "train": TRAIN},
           "ar": {"model": {**TINY_MODEL, "decoder_layers": 1, "src_ctc_layers": [], "tgt_ctc_layers": []},
                  "bucket_size": 8, "train": TRAIN},
           "eval": {"batch_size": 8, "beam_size": 2, "bootstrap": 50},
           "gate": {"min_bleu": 1.0},
           "compare": {"threads": 1, "batch_sizes": [1, 4], "n_utterances": 4, "warmup": 0, "repeats": 1,
                       "paired_trials": 100}},
}


CORPUS, FEATURES, VOCAB = "data/speech/mustc", "data/speech/features", "models/speech_vocab"
# each stage's declared paths and the command line dvc.yaml gives it (module, inputs, outputs, argv)
STAGES = {
    "speech_corpus": (speech_corpus, ("recorded?",), ("out",), ["--out", CORPUS]),
    "speech_vocab": (speech_vocab, ("corpus",), ("out",), ["--corpus", CORPUS, "--out", VOCAB]),
    "speech_features": (speech_features, ("corpus",), ("out",), ["--corpus", CORPUS, "--out", FEATURES]),
    "st_compare": (st_compare, ("test_features", "nast", "ar"), ("out",),
                   ["--test-features", f"{FEATURES}/tst-COMMON.safetensors", "--nast", "models/st_nast",
                    "--ar", "models/st_ar", "--out", "models/st_compare"]),
}


def train_argv(variant: str, kind: str, *sets: str) -> list[str]:
    return ["--stage", f"st_train@{variant}", "--kind", kind, "--corpus", CORPUS, "--features", FEATURES,
            "--vocab", VOCAB, "--out", f"models/{variant}", *[a for s in sets for a in ("--set", s)]]


def _run(root, name, params=PARAMS, argv=None):
    """Run a stage in-process on `root` like stage_main: paths parsed from its dvc.yaml-style command line,
    outputs committed only on success (no MLflow run)."""
    if name == "st_train":
        module, inputs, outputs, configure = st_train, ("corpus", "features", "vocab"), ("out",), st_train.add_options
    else:
        module, inputs, outputs, default_argv = STAGES[name]
        configure, argv = None, argv if argv is not None else default_argv
    paths = StagePaths(inputs, outputs)
    stage, args = parse_stage_args(name, argv, paths, configure)
    paths.take(args, root, stage)
    ctx = StageContext(stage, root, copy.deepcopy(params), None, args=args, paths=paths)
    try:
        module.run(ctx)
    except BaseException:
        ctx._discard_outputs()
        raise
    ctx._commit_outputs()
    return ctx


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Every stage once, in DAG order, on one temporary project root."""
    root = tmp_path_factory.mktemp("speech-project")
    threads = torch.get_num_threads()
    try:
        for name in ("speech_corpus", "speech_vocab", "speech_features"):
            _run(root, name)
        for kind in ("nast", "ar"):
            _run(root, "st_train", argv=train_argv(f"st_{kind}", kind))
        _run(root, "st_compare")
    finally:
        torch.set_num_threads(threads)
    return root


def _metrics(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_corpus_vocab_and_features(pipeline):
    corpus = pipeline / "data/speech/mustc"
    m = _metrics(corpus / "metrics.json")
    assert m["synthetic"] is True and m["segments"] == {"train": 40, "dev": 8, "tst-COMMON": 8}
    assert m["hours_total"] > 0 and 0 < m["reordering"]["non_monotonic_fraction"] <= 1
    info = _metrics(corpus / "corpus.json")
    assert info["root"] == "." and set(info["transcripts_md5"]) == {"train", "dev", "tst-COMMON"}
    assert (corpus / "en-de/data/tst-COMMON/txt/tst-COMMON.yaml").is_file()
    v = _metrics(pipeline / "models/speech_vocab/metrics.json")
    assert v["vocab_size"] == 120 and v["dev_roundtrip_exact"] == 1.0
    assert (pipeline / "models/speech_vocab/tokenizer.json").is_file()
    f = _metrics(pipeline / "data/speech/features/metrics.json")
    assert f["num_mel_bins"] == 80 and f["train"]["utterances"] == 40 and f["tst-COMMON"]["frames"] > 0
    for split in ("train", "dev", "tst-COMMON"):
        assert (pipeline / f"data/speech/features/{split}.safetensors").is_file()


@pytest.mark.parametrize("name", ["st_nast", "st_ar"])
def test_trained_models(pipeline, name):
    out = pipeline / "models" / name
    assert {p.name for p in (out / "model").iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    m = _metrics(out / "metrics.json")
    assert m["train_steps"] == 10 and m["test_sentences"] == 8
    low, high = m["bleu_ci95"]
    assert 0.0 <= low <= m["bleu"] <= high <= 100.0
    assert m["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert 0.0 <= m["src_cer"] and 0.0 <= m["src_wer"]
    assert set(m["gate"]) >= {"passed", "metric", "value", "threshold", "higher_is_better", "reason", "profile",
                              "eval_set", "stopped_by_time_budget"}
    assert m["gate"]["passed"] == (m["bleu"] > 1.0 and not m["stopped_by_time_budget"])
    assert m["gate"]["eval_set"].startswith("data/speech/features/tst-COMMON.safetensors md5=")
    methods = {"greedy"} if name == "st_nast" else {"greedy", "beam"}
    assert {k[len("bleu/"):] for k in m if k.startswith("bleu/") and not k.endswith("_ci95")} == methods
    rows = [json.loads(line) for line in (out / "hyps.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 8 and methods <= set(rows[0])
    assert (out / "plots/train_curve.csv").is_file()
    assert not (pipeline / "checkpoints" / name).exists() or not any((pipeline / "checkpoints" / name).iterdir())


def test_compare(pipeline):
    """Speed-ups land in the untracked machine folder, BLEU in the tracked output; moving a speed figure
    back into metrics.json (or BLEU out of it) fails here."""
    out = pipeline / "models/st_compare"
    m = _metrics(out / "metrics.json")
    machine = pipeline / "reports/machine/st_compare"
    facts = _metrics(machine / "facts.json")
    for b in (1, 4):
        for kind in ("greedy", "beam"):
            assert facts[f"speedup/batch{b}_{kind}"] > 0
    assert not any(k.startswith(("speedup/", "ms_per_utt/", "timing")) for k in m)
    assert set(k for k in m if k.startswith("bleu/")) == {"bleu/nast", "bleu/ar_greedy", "bleu/ar_beam"}
    assert facts["timing"]["threads"] == 1 and facts["timing"]["utterances"] == 4
    assert (out / "comparison.md").read_text().startswith("# NAST vs autoregressive")
    assert m["paired/nast_minus_ar_beam"] == pytest.approx(m["bleu/nast"] - m["bleu/ar_beam"], abs=0.02)
    assert 0.0 <= m["paired/nast_vs_ar_greedy_p_value"] <= 1.0 and "paired approximate" in (out / "comparison.md").read_text()
    assert "ms / utterance" not in (out / "comparison.md").read_text()
    assert (machine / "speed.png").stat().st_size > 0 and (machine / "speed.md").is_file()
    assert not (out / "plots/speed.png").exists()


def test_ablation_override_reaches_the_model(pipeline, tmp_path):
    """`--set` goes on top of st.nast.model, and a bad switch combination is a ParamsError."""
    assert st_train.parse_sets(["pae=false", "n=3"]) == {"pae": False, "n": 3}
    with pytest.raises(ParamsError, match="curriculum"):  # curriculum on (PARAMS) needs pae
        _run(pipeline, "st_train", argv=train_argv("st_nast_bad", "nast", "pae=false"))
    assert not (pipeline / "models/st_nast_bad").exists()


def test_bucket_size_is_checked_where_it_is_read(pipeline):
    """A missing or non-positive st.<kind>.bucket_size is a ParamsError naming the key (dropping the check
    would fail here: bucket_batches would loop forever on 0 or crash far from the params)."""
    params = copy.deepcopy(PARAMS)
    params["st"]["ar"]["bucket_size"] = 0
    with pytest.raises(ParamsError, match="st.ar.bucket_size"):
        _run(pipeline, "st_train", params, argv=train_argv("st_ar_bad", "ar"))
    assert not (pipeline / "models/st_ar_bad").exists()


def test_buckets_per_step_follow_the_train_block(pipeline):
    """st.<kind>.train.batch_size counts length buckets per micro-batch and is used as written (no reset to 1):
    with 2 buckets per step one epoch of 5 buckets of 8 takes 2.5 steps, so train_epochs is 4.0 after 10 steps."""
    params = copy.deepcopy(PARAMS)
    params["st"]["ar"]["train"] = {**TRAIN, "batch_size": 2, "eval_every": 0}
    _run(pipeline, "st_train", params, argv=train_argv("st_ar_two", "ar"))
    m = _metrics(pipeline / "models/st_ar_two/metrics.json")
    assert m["train_steps"] == 10 and m["train_epochs"] == 4.0


def test_real_mustc_root_is_validated_and_used(pipeline, tmp_path):
    real = tmp_path / "mustc"
    shutil.copytree(pipeline / "data/speech/mustc/en-de", real / "en-de")
    params = copy.deepcopy(PARAMS)
    params["speech"]["mustc_root"] = str(real)
    _run(tmp_path, "speech_corpus", params)
    m = _metrics(tmp_path / "data/speech/mustc/metrics.json")
    assert m["synthetic"] is False and m["segments"]["train"] == 40 and "reordering" not in m
    assert _metrics(tmp_path / "data/speech/mustc/corpus.json")["root"] == str(real.resolve())


def test_malformed_mustc_root_fails_naming_the_file(pipeline, tmp_path):
    real = tmp_path / "mustc"
    shutil.copytree(pipeline / "data/speech/mustc/en-de", real / "en-de")
    de = real / "en-de/data/dev/txt/dev.de"
    de.write_text("".join(de.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    params = copy.deepcopy(PARAMS)
    params["speech"]["mustc_root"] = str(real)
    with pytest.raises(AlignflowError, match="speech.mustc_root") as info:
        _run(tmp_path, "speech_corpus", params)
    assert str(de) in str(info.value) and "line counts differ" in str(info.value)
    assert not (tmp_path / "data/speech/mustc").exists()
    params["speech"]["mustc_root"] = str(tmp_path / "nowhere")
    with pytest.raises(ParamsError, match="does not exist"):
        _run(tmp_path, "speech_corpus", params)


def test_unknown_voice_is_a_params_error(tmp_path):
    params = copy.deepcopy(PARAMS)
    params["speech"]["voices"] = ["en-us", "xx-nonexistent"]
    with pytest.raises(ParamsError, match="speech.voices.*xx-nonexistent"):
        _run(tmp_path, "speech_corpus", params)


def test_vocab_ids_are_identical_across_processes():
    """The Unigram trainer alone is not reproducible across processes; the stage's vocabulary must be."""
    import subprocess
    import sys

    code = ("from pipelines.speech.corpus import generate_corpus; from pipelines.speech.vocab import train_vocab; "
            "c = generate_corpus(300, 5); print(train_vocab([p['en'] for p in c] + [p['de'] for p in c], 200)"
            ".tokenizer.to_str())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(outs) == 1
