"""Audio in: sources that yield 16 kHz mono PCM16, and the pure conversions they use.

``sources``  the kernel microphone (PortAudio), audio files (libsndfile), a queue fed by another thread
``pcm``      float and µ-law to PCM16, streaming resampling, levels
``chunks``   numbered chunks (the browser microphone's) back in order, gaps filled with silence
"""
