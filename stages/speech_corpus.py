"""Stage `speech_corpus`: the EN->DE speech corpus in MuST-C layout, in the folder passed as `--out`.

By default it synthesises one: seeded sentence pairs with German clause reordering (or the
monotonic ablation, `speech.reorder: false`), read aloud by espeak-ng voices, one speaker per talk.
With `speech.mustc_root` set it instead validates that real MuST-C root: every split goes through
`load_mustc`, so a malformed root fails with the loader's message naming the file (exit 2). The
real audio stays where it is; `corpus.json` points at it and records the transcripts' md5s, and
`--recorded` (the `external_inputs` stage's fingerprint file) adds the root's content md5, so a
changed root changes this output.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.atomic import write_json_atomic
from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.speech import tts
from pipelines.speech.corpus import SPLITS, build_speech_corpus
from pipelines.speech.store import CORPUS_INFO
from stages.speech_common import checked_split


def _stats(split_segments: dict) -> dict:
    return {
        "segments": {s: len(v) for s, v in split_segments.items()},
        "hours": {s: round(sum(x.duration for x in v) / 3600, 4) for s, v in split_segments.items()},
        "hours_total": round(sum(x.duration for v in split_segments.values() for x in v) / 3600, 4),
        "speakers": {s: len({x.speaker for x in v}) for s, v in split_segments.items()},
        "talks": {s: len({x.wav_path.name for x in v}) for s, v in split_segments.items()},
        "mean_words": {s: round(sum(len(x.en.split()) for x in v) / len(v), 2) for s, v in split_segments.items()},
    }


def _transcript_md5s(split_segments: dict, lang: str) -> dict:
    out = {}
    for split, segs in split_segments.items():
        txt = segs[0].wav_path.parent.parent / "txt"
        out[split] = {name: file_md5(txt / name) for name in (f"{split}.yaml", f"{split}.en", f"{split}.{lang}")}
    return out


def _check_voices(voices: list[str]) -> None:
    """Fail with the param's name before synthesis (which runs in a child process) on an unknown voice."""
    synth = tts.SpeechSynthesizer.get()
    unknown = [v for v in voices if synth.lib.espeak_SetVoiceByName(str(v).encode()) != 0]
    if unknown:
        raise ParamsError(f"params.yaml: speech.voices: unknown espeak-ng voice(s) {unknown}; "
                          f"English voices: {synth.voices()}")


def _synthetic(p: dict, out: Path) -> tuple[dict, dict]:
    try:
        sizes = [int(p["n_train"]), int(p["n_dev"]), int(p["n_test"])]
        voices, rates, pitches = list(p["voices"]), [int(r) for r in p["rates"]], [int(x) for x in p["pitches"]]
        per_talk = int(p["segments_per_talk"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: speech: {exc!r}") from exc
    if min(sizes) < 1 or per_talk < 1 or not voices or not rates or not pitches:
        raise ParamsError("params.yaml: speech: n_train/n_dev/n_test and segments_per_talk must be >= 1, "
                          "voices/rates/pitches non-empty")
    _check_voices(voices)
    built = build_speech_corpus(out, *sizes, seed=int(p["seed"]), reorder=bool(p["reorder"]), voices=voices,
                                rates=rates, pitches=pitches, segments_per_talk=per_talk, lang=str(p["lang"]),
                                progress=False)
    reorder = {k: round(float(built[k]), 4) for k in ("sentences", "non_monotonic_fraction", "kendall_tau_distance")}
    return {"root": ".", "synthetic": True, "reorder": bool(p["reorder"])}, {"reordering": reorder}


def _recorded_md5(path: Path | None) -> str | None:
    """The content md5 the `external_inputs` stage recorded for `speech.mustc_root` (None if not recorded)."""
    if path is None:
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (recorded.get("speech.mustc_root") or {}).get("md5")


def run(ctx: StageContext) -> None:
    p = ctx.block("speech")
    lang = str(p.get("lang", "de"))
    out = ctx.output("out")
    if p.get("mustc_root"):
        root = Path(str(p["mustc_root"])).expanduser()
        root = root if root.is_absolute() else (ctx.root / root)
        # the real root is read in place by later stages: its content fingerprint makes them rerun when it changes
        info = {"root": str(root.resolve()), "synthetic": False, "content_md5": _recorded_md5(ctx.input("recorded"))}
        extra = {}
        split_segments = {s: checked_split(root, s, lang, "speech.mustc_root") for s in SPLITS}
    else:
        info, extra = _synthetic(p, out)
        split_segments = {s: checked_split(out, s, lang, str(ctx.output_path("out"))) for s in SPLITS}
    info.update({"lang": lang, "splits": list(SPLITS),
                 "transcripts_md5": _transcript_md5s(split_segments, lang)})
    write_json_atomic(out / CORPUS_INFO, info)
    metrics = {"synthetic": info["synthetic"], **_stats(split_segments), **extra}
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("speech_corpus", run, blocks=("speech",), inputs=("recorded?",), outputs=("out",))
