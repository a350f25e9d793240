"""The speech-translation stages end to end on a tiny synthetic corpus: corpus -> vocab -> features ->
NAST and AR training -> comparison, plus a real-MuST-C root that is valid and one that is not."""
from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from alignflow.runtime.errors import AlignflowError, ParamsError
from tests.project import run_stage
from stages import speech_corpus, speech_features, speech_vocab, st_compare, st_train

TINY_MODEL = {"d_model": 32, "n_heads": 2, "ffn_dim": 64, "subsample_channels": 32, "acoustic_layers": 2,
              "textual_layers": 2, "src_ctc_layers": [1], "tgt_ctc_layers": [1], "cross_layer_from": 1,
              "conv_kernel": 5, "dropout": 0.0, "self_attn_drop": 0.0}
TRAIN = {"lr": 0.003, "warmup_steps": 2, "max_steps": 10, "batch_size": 8, "log_every": 5, "eval_every": 5,
         "checkpoint_every": 0, "time_budget_s": 30}
PARAMS = {
    "seed": 0, "profile": "unit", "speech_seed": 1,
    "speech": {"mustc_root": None, "lang": "de", "seed": 0, "n_train": 40, "n_dev": 8, "n_test": 8, "reorder": True,
               "voices": ["en-us", "en"], "rates": [175], "pitches": [50], "segments_per_talk": 10,
               "vocab_size": 120},
    "st": {"threads": 1,
           "nast": {"model": {**TINY_MODEL, "curriculum": True}, "train": TRAIN},
           "ar": {"model": {**TINY_MODEL, "decoder_layers": 1, "src_ctc_layers": [], "tgt_ctc_layers": []},
                  "train": TRAIN},
           "eval": {"batch_size": 8, "beam_size": 2, "bootstrap": 50},
           "gate": {"min_bleu": 1.0},
           "compare": {"threads": 1, "batch_sizes": [1, 4], "n_utterances": 4, "warmup": 0, "repeats": 1}},
}


def _run(root, name, fn, params=PARAMS):
    return run_stage(root, name, fn, params)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Every stage once, in DAG order, on one temporary project root."""
    root = tmp_path_factory.mktemp("speech-project")
    threads = torch.get_num_threads()
    try:
        _run(root, "speech_corpus", speech_corpus.run)
        _run(root, "speech_vocab", speech_vocab.run)
        _run(root, "speech_features", speech_features.run)
        for kind in ("nast", "ar"):
            args = st_train.parse_args(["--kind", kind])
            _run(root, args.name, st_train.make_run(args))
        _run(root, "st_compare", st_compare.run)
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
    assert "ms / utterance" not in (out / "comparison.md").read_text()
    assert (machine / "speed.png").stat().st_size > 0 and (machine / "speed.md").is_file()
    assert not (out / "plots/speed.png").exists()


def test_ablation_override_reaches_the_model(pipeline, tmp_path):
    """`--set` goes on top of st.nast.model, and a bad switch combination is a ParamsError."""
    args = st_train.parse_args(["--kind", "nast", "--name", "st_nast_bad", "--set", "pae=false"])
    assert args.name == "st_nast_bad" and st_train.parse_sets(args.set) == {"pae": False}
    with pytest.raises(ParamsError, match="curriculum"):  # curriculum on (PARAMS) needs pae
        _run(pipeline, args.name, st_train.make_run(args))
    assert not (pipeline / "models/st_nast_bad").exists()


def test_real_mustc_root_is_validated_and_used(pipeline, tmp_path):
    real = tmp_path / "mustc"
    shutil.copytree(pipeline / "data/speech/mustc/en-de", real / "en-de")
    params = copy.deepcopy(PARAMS)
    params["speech"]["mustc_root"] = str(real)
    _run(tmp_path, "speech_corpus", speech_corpus.run, params)
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
        _run(tmp_path, "speech_corpus", speech_corpus.run, params)
    assert str(de) in str(info.value) and "line counts differ" in str(info.value)
    assert not (tmp_path / "data/speech/mustc").exists()
    params["speech"]["mustc_root"] = str(tmp_path / "nowhere")
    with pytest.raises(ParamsError, match="does not exist"):
        _run(tmp_path, "speech_corpus", speech_corpus.run, params)


def test_unknown_voice_is_a_params_error(tmp_path):
    params = copy.deepcopy(PARAMS)
    params["speech"]["voices"] = ["en-us", "xx-nonexistent"]
    with pytest.raises(ParamsError, match="speech.voices.*xx-nonexistent"):
        _run(tmp_path, "speech_corpus", speech_corpus.run, params)


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
