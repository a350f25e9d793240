"""A padded batch of random utterances for the speech-model tests."""
import torch

from pipelines.speech.models import collate

SPECIAL = {"pad": 1, "bos": 2, "eos": 3}
VOCAB = 12


def make_batch(frames=(48, 36, 60, 28), tgt_lens=(4, 3, 5, 2), seed=0, n_mels=16):
    gen = torch.Generator().manual_seed(seed)
    examples = [
        {
            "features": torch.randn(t, n_mels, generator=gen),
            "tgt_ids": torch.randint(4, VOCAB, (n,), generator=gen).tolist(),
            "src_ids": torch.randint(4, VOCAB, (n + 1,), generator=gen).tolist(),
        }
        for t, n in zip(frames, tgt_lens)
    ]
    return collate(examples, pad_id=SPECIAL["pad"])
