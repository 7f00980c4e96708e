"""Simulated media a person recognises as a placeholder: a labelled test pattern, a test tone, an
animated test pattern, decoded here as a viewer or player would."""

from __future__ import annotations

import itertools

from conftest import ServerFactory
from media import gif_frames, png_pixels, wav_samples
from switchboard.providers import placeholder
from switchboard.v1 import catalog_pb2, router_pb2

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


class TestImage:
    """The image: colour bars, a black band with white lettering, a grey ramp, at its size."""

    def test_labelled_test_pattern(self) -> None:
        """512x512 by default; seven bars on top, white text in the band, eight greys below."""
        width, height, rows = png_pixels(placeholder.image("openai/gpt-image-2"))
        assert (width, height) == (512, 512)
        assert len(dict.fromkeys(rows[10])) == 7
        assert len(dict.fromkeys(rows[-10])) == 8
        band = rows[height // 4 : height * 3 // 4]
        lettering = sum(px == WHITE for row in band for px in row)
        assert 0.03 < lettering / (width * len(band)) < 0.5
        assert {px for row in band for px in row} == {WHITE, BLACK}

    def test_the_label_is_written(self) -> None:
        """The band of the labelled pattern differs from an unlabelled one, and from another model's label."""
        plain = placeholder.pattern(64, 64, [])
        assert placeholder.pattern(64, 64, ["SIMULATED"]) != plain
        assert png_pixels(placeholder.image("a"))[2] != png_pixels(placeholder.image("b"))[2]

    def test_any_size(self) -> None:
        """The pattern is drawn at the size asked for, even a small or wide one."""
        for size in ((1024, 256), (64, 64), (8, 8)):
            width, height, _ = png_pixels(placeholder.image("m", *size))
            assert (width, height) == size

    def test_fast_and_small(self) -> None:
        """A 512x512 placeholder is a few kilobytes."""
        assert len(placeholder.image("openai/gpt-image-2")) < 20_000


class TestSpeech:
    """Speech is a test tone: three 1 kHz beeps in about a second."""

    def test_three_beeps_of_one_kilohertz(self) -> None:
        rate, samples = wav_samples(placeholder.tone())
        assert 0.9 < len(samples) / rate < 1.5
        loud = [abs(s) > 1000 for s in samples]
        bursts = sum(1 for i in range(1, len(loud)) if loud[i] and not any(loud[max(0, i - 40) : i]))
        assert bursts == 3
        first = samples[: int(rate * 0.2)]
        crossings = sum(1 for a, b in itertools.pairwise(first) if a < 0 <= b)
        assert 190 <= crossings <= 210  # 1000 Hz over 0.2 s


class TestVideo:
    """Video is an animated GIF of the pattern with a bar sweeping across it."""

    def test_animated_pattern(self) -> None:
        width, height, frames, delays = gif_frames(placeholder.video("fal-ai/veo3.1/fast"))
        assert (width, height) == placeholder.VIDEO_SIZE
        assert len(frames) == 8
        assert all(d > 0 for d in delays)
        assert len({str((f[5], f[-5])) for f in frames}) == 8  # the sweep moves in every frame
        band = frames[0][height // 2]
        assert WHITE in band  # lettering crosses the middle row


class TestOverTheWire:
    """What Generate returns for media on the simulated provider."""

    async def test_generate_media(self, start_server: ServerFactory) -> None:
        """An image request streams the 512x512 labelled PNG; speech a WAV; video a GIF."""
        _, stub = await start_server()
        got = {}
        for modality in ("IMAGE", "SPEECH", "VIDEO"):
            req = router_pb2.GenerateRequest(
                account_id="a1", modality=catalog_pb2.Modality.Value("MODALITY_" + modality), prompt="A red fox"
            )
            frames = [f async for f in stub.Generate(req)]
            (artifact,) = [f.artifact for f in frames if f.WhichOneof("event") == "artifact"]
            got[modality] = artifact
        assert got["IMAGE"].mime_type == "image/png"
        assert png_pixels(got["IMAGE"].data)[:2] == (512, 512)
        assert got["SPEECH"].mime_type == "audio/wav"
        assert wav_samples(got["SPEECH"].data)[0] == 16000
        assert got["VIDEO"].mime_type == "image/gif"
        assert len(gif_frames(got["VIDEO"].data)[2]) == 8
