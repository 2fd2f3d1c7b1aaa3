"""Audio preprocessing in numpy: 16 kHz mono waveforms and log-mel spectrograms.

The public entry is :mod:`dp_models.preprocess`; the definitions (and the references the
tests compare them with) are documented there.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AudioPreset",
    "LogMelPreset",
    "WhisperLogMelPreset",
    "log_mel_spectrogram",
    "mel_filters",
    "power_spectrogram",
    "resample",
    "to_mono_float",
]

Float32 = npt.NDArray[np.float32]
Float64 = npt.NDArray[np.float64]

#: The sample rate every audio preset produces.
SAMPLE_RATE = 16_000
#: More channels than this in the first axis means the array is (samples, channels).
_MAX_CHANNELS = 16


def to_mono_float(waveform: Any) -> Float64:
    """A 1-D float64 waveform from ``waveform``: 1-D ``(samples,)`` or 2-D ``(channels,
    samples)`` (the channels averaged); float arrays as they are, int16 and int32 PCM
    scaled to [-1, 1)."""
    array = np.asarray(waveform)
    if array.dtype == np.int16:
        array = array.astype(np.float64) / 32768.0
    elif array.dtype == np.int32:
        array = array.astype(np.float64) / 2147483648.0
    elif array.dtype.kind == "f":
        array = array.astype(np.float64)
    else:
        raise TypeError(
            f"a waveform is a float array (or int16/int32 PCM), not {array.dtype}; "
            "convert it explicitly"
        )
    if array.ndim == 2:
        if array.shape[0] > _MAX_CHANNELS:
            raise ValueError(
                f"a 2-D waveform is (channels, samples), and {array.shape} has "
                f"{array.shape[0]} channels: pass the transpose of a (samples, channels) "
                "array (what soundfile.read returns)"
            )
        array = array.mean(axis=0)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"a waveform is (samples,) or (channels, samples) with samples, not {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("the waveform has NaN or infinite samples")
    return array


def resample(waveform: Float64, orig_rate: int, target_rate: int) -> Float64:
    """Band-limited polyphase resampling of a 1-D waveform by ``target_rate / orig_rate``
    (reduced by their gcd to up / down): ``scipy.signal.resample_poly(x, up, down)`` with
    its default Kaiser window (beta 5), ``ceil(len * up / down)`` samples out."""
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates are positive integers, not {orig_rate} -> {target_rate}")
    g = gcd(int(orig_rate), int(target_rate))
    up, down = int(target_rate) // g, int(orig_rate) // g
    if up == down == 1:
        return np.array(waveform, dtype=np.float64)
    # imported on first use: scipy is slow to import
    from scipy.signal import resample_poly  # type: ignore[import-untyped]

    out: Float64 = np.asarray(resample_poly(waveform, up, down), dtype=np.float64)
    return out


def _hz_to_mel(hz: Float64) -> Float64:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    return np.where(
        above, min_log_hz / f_sp + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel
    )


def _mel_to_hz(mel: Float64) -> Float64:
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


def mel_filters(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> Float64:
    """Triangular mel filters ``(n_mels, 1 + n_fft // 2)``: Slaney's mel scale and area
    normalization, as ``librosa.filters.mel`` (and Whisper's ``mel_filters.npz``)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    return weights


def power_spectrogram(waveform: Float64, n_fft: int, hop: int, pad_mode: str) -> Float64:
    """``|STFT|^2`` ``(1 + n_fft // 2, frames)``: centered frames (``n_fft // 2`` padding
    each side, ``reflect`` or ``constant``), periodic Hann window, one frame per ``hop``."""
    pad = n_fft // 2
    if pad_mode == "reflect" and len(waveform) <= pad:
        raise ValueError(
            f"a waveform of {len(waveform)} samples is too short to reflect-pad by {pad}"
        )
    padded = np.pad(waveform, pad, mode=pad_mode)  # type: ignore[call-overload]
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    spectrum = np.fft.rfft(frames * window, axis=1)
    power: Float64 = (spectrum.real**2 + spectrum.imag**2).T
    return power


def log_mel_spectrogram(waveform: Float64, n_mels: int) -> Float32:
    """Whisper's log-mel features of a 16 kHz waveform: 400-point STFT every 160 samples
    (reflect-padded), the last frame dropped, Slaney mel filters, ``log10`` (floor
    1e-10), clipped to 8 below the maximum, then ``(x + 4) / 4``."""
    power = power_spectrogram(waveform, 400, 160, "reflect")[:, :-1]
    mel = mel_filters(SAMPLE_RATE, 400, n_mels) @ power
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    features: Float32 = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return features


def _to_16k(waveform: Any, sample_rate: int) -> Float64:
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool):
        raise TypeError(f"sample_rate is an integer in Hz, not {sample_rate!r}")
    return resample(to_mono_float(waveform), int(sample_rate), SAMPLE_RATE)


@dataclass(frozen=True)
class AudioPreset:
    """``audio_16k_mono``: mono (channels averaged), resampled to 16 kHz, float32."""

    name: str

    def __call__(self, waveform: Any, sample_rate: int = SAMPLE_RATE) -> Float32:
        return _to_16k(waveform, sample_rate).astype(np.float32)


@dataclass(frozen=True)
class WhisperLogMelPreset:
    """``whisper_log_mel_{80,128}``: 16 kHz mono, padded with silence or cut to 30 s,
    Whisper's log-mel features ``(n_mels, 3000)`` float32."""

    name: str
    n_mels: int
    seconds: int = 30

    def __call__(self, waveform: Any, sample_rate: int = SAMPLE_RATE) -> Float32:
        audio = _to_16k(waveform, sample_rate)
        length = self.seconds * SAMPLE_RATE
        audio = np.pad(audio[:length], (0, max(0, length - len(audio))))
        return log_mel_spectrogram(audio, self.n_mels)


@dataclass(frozen=True)
class LogMelPreset:
    """``log_mel_128``: 16 kHz mono, power mel spectrogram (``n_fft``-point STFT every
    ``hop`` samples, zero-padded centered frames, periodic Hann window, Slaney mel filters
    up to 8 kHz), in decibels: ``10 log10(max(S, 1e-10))``, floored at 80 dB below the
    maximum; ``(n_mels, 1 + samples // hop)`` float32."""

    name: str
    n_mels: int
    n_fft: int = 1024
    hop: int = 256
    top_db: float = 80.0

    def __call__(self, waveform: Any, sample_rate: int = SAMPLE_RATE) -> Float32:
        audio = _to_16k(waveform, sample_rate)
        power = power_spectrogram(audio, self.n_fft, self.hop, "constant")
        mel = mel_filters(SAMPLE_RATE, self.n_fft, self.n_mels) @ power
        db = 10.0 * np.log10(np.maximum(mel, 1e-10))
        floored: Float32 = np.maximum(db, db.max() - self.top_db).astype(np.float32)
        return floored
