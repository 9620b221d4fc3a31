"""Images: the stimulus set (``stimuli`` stage) and training image datasets (``images`` stage)."""
