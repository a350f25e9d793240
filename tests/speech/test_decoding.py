"""AR baseline: incremental decoding, greedy vs beam, padding invariance, losses, overfitting."""

import pytest
import torch

from pipelines.speech.models import build_model, collate
from pipelines.speech.models.ar import shift_targets



from tests.speech.batches import SPECIAL, VOCAB, make_batch

TINY_AR = {
    "n_mels": 16, "d_model": 32, "n_heads": 4, "ffn_dim": 64, "subsample_channels": 32, "conv_kernel": 5,
    "acoustic_layers": 2, "textual_layers": 2, "decoder_layers": 2, "dropout": 0.0,
}




def ar(seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model("ar", {**TINY_AR, **overrides}, VOCAB, SPECIAL)


def test_shift_targets():
    tokens = torch.tensor([[5, 6, 7], [8, 1, 1]])
    prev, gold = shift_targets(tokens, torch.tensor([3, 1]), bos=2, eos=3, pad=1)
    assert prev.tolist() == [[2, 5, 6, 7], [2, 8, 1, 1]]
    assert gold.tolist() == [[5, 6, 7, 3], [8, 3, 1, 1]]


@pytest.mark.parametrize("aux", ["source", "target", "both", "none"])
def test_ar_loss_components(aux):
    model, batch = ar(ar_ctc=aux).train(), make_batch()
    out = model.loss(batch)
    assert ("src_ctc_top" in out) == (aux in ("source", "both"))
    assert ("tgt_ctc_top" in out) == (aux in ("target", "both"))
    assert (model.encoder.textual.ctc_proj is None) == (aux in ("source", "none"))
    assert torch.allclose(out["total"], out["ce"] + 0.2 * out["aux_ctc"])
    aux_value = out["aux_ctc"].item()
    assert aux_value == 0.0 if aux == "none" else aux_value > 0
    out["total"].backward()


def test_incremental_decoding_equals_full_recompute():
    model, batch = ar().eval(), make_batch()
    with torch.no_grad():
        enc = model(batch["features"], batch["feat_lengths"])
        memory_kv = model.decoder.project_memory(enc.out)
        tokens = torch.randint(4, VOCAB, (4, 7))
        full = model.decoder(tokens, memory_kv, enc.pad_mask)
        caches = [dict() for _ in model.decoder.layers]
        steps = [model.decoder(tokens[:, t : t + 1], memory_kv, enc.pad_mask, caches, offset=t) for t in range(7)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    assert caches[0]["k"].shape == (4, 4, 7, 8)  # (batch, heads, steps, head dim)


def test_beam_one_equals_greedy_and_min_len_forces_length():
    model, batch = ar(seed=1).eval(), make_batch()
    args = (batch["features"], batch["feat_lengths"])
    for max_len, min_len in ((10, 0), (6, 3)):
        greedy = model.greedy_decode(*args, max_len=max_len, min_len=min_len)
        assert greedy == model.beam_search(*args, beam_size=1, max_len=max_len, min_len=min_len)
        assert all(min_len <= len(g) <= max_len for g in greedy)
    fixed = model.beam_search(*args, beam_size=3, max_len=5, min_len=5)
    assert [len(h) for h in fixed] == [5] * 4 == [len(h) for h in model.greedy_decode(*args, max_len=5, min_len=5)]
    specials = {0, SPECIAL["pad"], SPECIAL["bos"], SPECIAL["eos"]}
    assert not specials & {i for h in fixed for i in h}


def test_ar_decoding_padding_invariance():
    model, batch = ar(seed=2).eval(), make_batch()
    with torch.no_grad():
        greedy = model.greedy_decode(batch["features"], batch["feat_lengths"], max_len=8)
        beam = model.beam_search(batch["features"], batch["feat_lengths"], beam_size=3, max_len=8)
        enc = model(batch["features"], batch["feat_lengths"])
        prev = torch.randint(4, VOCAB, (4, 5))
        logits = model.decoder(prev, model.decoder.project_memory(enc.out), enc.pad_mask)
        for i, n in enumerate(batch["feat_lengths"].tolist()):
            feats, lens = batch["features"][i : i + 1, :n], batch["feat_lengths"][i : i + 1]
            assert model.greedy_decode(feats, lens, max_len=8) == greedy[i : i + 1]
            assert model.beam_search(feats, lens, beam_size=3, max_len=8) == beam[i : i + 1]
            alone = model(feats, lens)
            one = model.decoder(prev[i : i + 1], model.decoder.project_memory(alone.out), alone.pad_mask)
            assert torch.allclose(logits[i], one[0], atol=1e-5)


def test_ar_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = build_model("ar", {**TINY_AR, "d_model": 48, "ffn_dim": 96}, VOCAB, SPECIAL)
    batch = make_batch(seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    with torch.no_grad():
        first = float(model.eval().loss(batch)["nll"])
    model.train()
    for _ in range(60):
        loss = model.loss(batch)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = float(model.loss(batch)["nll"])
    targets = [t[:n].tolist() for t, n in zip(batch["tgt_tokens"], batch["tgt_lengths"])]
    assert final < 0.5 * first, (first, final)  # measured: 5.17 -> 0.11
    assert model.greedy_decode(batch["features"], batch["feat_lengths"], max_len=10) == targets
    assert model.beam_search(batch["features"], batch["feat_lengths"], beam_size=4, max_len=10) == targets


def test_ar_training_is_deterministic_with_fixed_seed():
    def run(seed):
        model = ar(seed=seed, dropout=0.1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = make_batch()
        for _ in range(2):
            loss = model.loss(batch)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item(), model.eval().beam_search(batch["features"], batch["feat_lengths"], 3, max_len=6)

    assert run(5) == run(5)
    assert run(5)[0] != run(6)[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    """Same weights on GPU: a training step (curriculum + Viterbi included) runs, decoding agrees."""
    nast_cfg = {k: v for k, v in TINY_AR.items() if k != "decoder_layers"}
    nast_cfg.update(src_ctc_layers=[1], tgt_ctc_layers=[1], cross_layer_from=1)
    torch.manual_seed(0)
    models = [build_model("nast", nast_cfg, VOCAB, SPECIAL), ar()]
    batch = make_batch()
    on_gpu = {k: v.cuda() for k, v in batch.items()}
    cpu_args, gpu_args = (batch["features"], batch["feat_lengths"]), (on_gpu["features"], on_gpu["feat_lengths"])
    tf32, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False  # full fp32 convs
    try:
        for model in models:
            gpu = build_model(model.kind, model.cfg, VOCAB, SPECIAL).cuda()
            gpu.load_state_dict(model.state_dict())
            gpu.train().loss(on_gpu)["total"].backward()
            model.eval(), gpu.eval()
            with torch.no_grad():
                assert torch.allclose(model(*cpu_args).out, gpu(*gpu_args).out.cpu(), atol=1e-3)
                if model.kind == "nast":
                    assert model.decode(*cpu_args) == gpu.decode(*gpu_args)
                else:
                    assert model.beam_search(*cpu_args, 3, max_len=6) == gpu.beam_search(*gpu_args, 3, max_len=6)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def test_ar_memory_keeps_frame_information_under_adam():
    """Regression: with source CTC alone the textual-top memory collapsed to one frame-constant vector
    (Adam + a skewed target prior + the final LayerNorm), so the decoder ignored the audio. Measured on
    this setup after 80 steps, seeds 0-2: relative spread 0.17 / 0.19 / 0.42 with ar_ctc="source", 0.82 /
    0.83 / 0.85 with the default "both" (both dip to 0.02-0.03 at step 20; with the earlier default conv
    init, 0.24 against 0.46 at step 40)."""
    torch.manual_seed(0)
    model = ar(decoder_layers=1)
    gen = torch.Generator().manual_seed(0)
    prior = torch.tensor([0.0] * 4 + [0.5**k for k in range(1, VOCAB - 3)])  # a strong unigram prior, as in text
    batches = []
    for _ in range(8):
        examples = []
        for _ in range(8):
            tgt = torch.multinomial(prior, int(torch.randint(8, 16, (1,), generator=gen)), True, generator=gen).tolist()
            frames = int(torch.randint(40, 80, (1,), generator=gen))
            examples.append({"features": torch.randn(frames, 16, generator=gen), "tgt_ids": tgt, "src_ids": tgt})
        batches.append(collate(examples, SPECIAL["pad"]))

    def spread():  # frame-to-frame std of the memory relative to its size (0: constant over frames)
        with torch.no_grad():
            enc = model.eval()(batches[0]["features"], batches[0]["feat_lengths"])
        mem = enc.out[~enc.pad_mask]
        return float(mem.std(0).mean() / mem.pow(2).mean().sqrt())

    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, betas=(0.9, 0.98), weight_decay=0.01)  # st.ar.train
    model.train()
    for step in range(80):
        for group in opt.param_groups:
            group["lr"] = 5e-3 * min(1.0, (step + 1) / 10)
        loss = model.loss(batches[step % 8])["total"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert spread() > 0.6
