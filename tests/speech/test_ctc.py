"""CTC utilities: Viterbi alignment against brute force, greedy decoding, loss bookkeeping."""

import itertools

import pytest
import torch

from pipelines.speech.models.ctc import collapse, ctc_loss, greedy_decode, min_frames, viterbi_align



def brute_force_best(log_probs: torch.Tensor, target: list[int]):
    """Best (score, path) over all frame labelings whose CTC collapse is ``target``."""
    t, v = log_probs.shape
    best = (float("-inf"), None)
    for path in itertools.product(range(v), repeat=t):
        if collapse(list(path)) == target:
            score = float(log_probs[torch.arange(t), torch.tensor(path)].sum())
            best = max(best, (score, list(path)), key=lambda x: x[0])
    return best


CASES = [  # (frames, target)
    (1, []), (3, []), (1, [2]), (4, [1]), (4, [1, 2]), (5, [1, 1]), (3, [1, 1]),
    (6, [3, 1, 3]), (6, [2, 2, 2]), (5, [1, 2, 3]), (6, [1, 2, 2, 1]),
]


@pytest.mark.parametrize("frames,target", CASES)
def test_viterbi_matches_brute_force(frames, target):
    gen = torch.Generator().manual_seed(frames * 31 + len(target))
    log_probs = torch.log_softmax(torch.randn(frames, 4, generator=gen) * 2, dim=-1)
    want_score, want_path = brute_force_best(log_probs, target)
    tokens, scores, feasible = viterbi_align(
        log_probs[None], torch.tensor([frames]), torch.tensor([target + [0]])[:, : max(len(target), 1)],
        torch.tensor([len(target)]),
    )
    assert bool(feasible[0])
    assert float(scores[0]) == pytest.approx(want_score, abs=1e-5)
    assert tokens[0].tolist() == want_path
    assert collapse(tokens[0].tolist()) == target


def test_viterbi_batched_with_padding_matches_single():
    gen = torch.Generator().manual_seed(0)
    frames, targets = [7, 4, 9], [[1, 2, 2], [3], [2, 1, 3, 3]]
    t_max, l_max = max(frames) + 2, max(map(len, targets))
    log_probs = torch.log_softmax(torch.randn(3, t_max, 5, generator=gen), dim=-1)
    padded = torch.tensor([t + [4] * (l_max - len(t)) for t in targets])  # pad id 4, a real label
    tokens, scores, feasible = viterbi_align(log_probs, torch.tensor(frames), padded,
                                             torch.tensor([len(t) for t in targets]))
    assert feasible.all()
    for i, (n, tgt) in enumerate(zip(frames, targets)):
        one, score, _ = viterbi_align(log_probs[i : i + 1, :n], torch.tensor([n]), torch.tensor([tgt]),
                                      torch.tensor([len(tgt)]))
        assert tokens[i, :n].tolist() == one[0].tolist()
        assert (tokens[i, n:] == -1).all()
        assert float(scores[i]) == pytest.approx(float(score[0]), abs=1e-5)
        assert collapse(tokens[i, :n].tolist()) == tgt


def test_viterbi_infeasible_has_no_path():
    log_probs = torch.log_softmax(torch.randn(2, 3, 4), dim=-1)
    # [1, 1, 2] needs 4 frames (a blank between the repeats); [1, 2, 3] fits 3
    tokens, scores, feasible = viterbi_align(log_probs, torch.tensor([3, 3]), torch.tensor([[1, 1, 2], [1, 2, 3]]),
                                             torch.tensor([3, 3]))
    assert feasible.tolist() == [False, True]
    assert (tokens[0] == -1).all() and scores[0] == float("-inf")
    assert tokens[1].tolist() == [1, 2, 3]


def test_min_frames_counts_repeats():
    targets = torch.tensor([[1, 1, 2, 2], [1, 2, 3, 3], [5, 5, 0, 0]])
    # third row: length 1, the padding 0,0 must not count as a repeat
    assert min_frames(targets, torch.tensor([4, 3, 1])).tolist() == [6, 3, 1]


def test_greedy_decode_hand_made_logits():
    def one_hot(ids, v=5):
        return torch.nn.functional.one_hot(torch.tensor(ids), v).float()

    logits = torch.stack([
        one_hot([1, 1, 0, 1, 2, 2, 0, 3]),  # repeats merge, blank separates the two 1s
        one_hot([0, 0, 4, 4, 4, 0, 2, 2]),  # length 5: the trailing 2s are padding
    ])
    assert greedy_decode(logits, torch.tensor([8, 5])) == [[1, 1, 2, 3], [4]]
    assert greedy_decode(logits[:, :0], torch.tensor([0, 0])) == [[], []]


def test_ctc_loss_zero_infinity_and_infeasible_fraction():
    logits = torch.randn(4, 5, 6, requires_grad=True)
    targets = torch.tensor([[1, 2, 0, 0, 0, 0], [1, 2, 3, 4, 5, 1], [3, 3, 3, 0, 0, 0], [2, 0, 0, 0, 0, 0]])
    loss, infeasible = ctc_loss(logits, torch.tensor([5, 5, 4, 3]), targets, torch.tensor([2, 6, 3, 1]))
    assert torch.isfinite(loss) and float(infeasible) == pytest.approx(0.5)  # rows 1 (6 labels > 5) and 2 (needs 5 > 4)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
