"""Speech translation data: synthetic EN->DE corpus, TTS, MuST-C layout, fbank features, vocab."""
