"""The pure selection core: requirements, automatic order, fallback chain, pinned errors."""

from __future__ import annotations

import pytest
from switchboard.catalog import load_catalog
from switchboard.errors import (
    ExhaustedError,
    InvalidRequestError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from switchboard.selection import Selector, derive_requirements, tier_order
from switchboard.types import (
    AccountState,
    Capability,
    Modality,
    NotChosenReason,
    Requirements,
    SelectionMode,
    SelectionRequest,
    Tier,
)

CATALOG = load_catalog(None)
SELECTOR = Selector(CATALOG)


def account(plan: str = "free", balance: int | None = None) -> AccountState:
    return AccountState("acct", CATALOG.plans[plan], balance)


def request(modality: Modality = Modality.TEXT, *caps: Capability, **kw: object) -> SelectionRequest:
    language = str(kw.pop("language", ""))
    return SelectionRequest("acct", Requirements(modality, frozenset(caps), language), **kw)  # type: ignore[arg-type]


class CoolingDown:
    def __init__(self, *ids: str) -> None:
        self.ids = set(ids)

    def is_available(self, model_id: str) -> bool:
        return model_id not in self.ids


class TestRequirements:
    """Capabilities are derived from attachments and options."""

    def test_attachments_by_modality(self) -> None:
        """The same MIME type requires different capabilities per modality."""
        assert derive_requirements(Modality.TEXT, (), ["image/png"]).capabilities == {Capability.IMAGE_INPUT}
        assert derive_requirements(Modality.IMAGE, (), ["image/png"]).capabilities == {Capability.IMAGE_EDITING}
        assert derive_requirements(Modality.VIDEO, (), ["image/jpeg", "video/mp4"]).capabilities == {
            Capability.IMAGE_TO_VIDEO,
            Capability.VIDEO_EDITING,
        }
        assert derive_requirements(Modality.TEXT, (), ["application/pdf; q=1"]).capabilities == {
            Capability.DOCUMENT_INPUT
        }
        assert derive_requirements(Modality.TEXT, (), ["text/csv", "application/json"]).capabilities == frozenset()

    def test_options(self) -> None:
        """Web search, structured output, tools and reasoning each add their capability."""
        req = derive_requirements(Modality.TEXT, web_search=True, structured_output=True, tools=True, reasoning=True)
        assert req.capabilities == {
            Capability.WEB_SEARCH,
            Capability.STRUCTURED_OUTPUT,
            Capability.TOOL_CALLING,
            Capability.REASONING,
        }

    @pytest.mark.parametrize("mime", ["", "image", "image/", "/png", "image/png/x", "ima ge/png", "é/x"])
    def test_malformed_mime_type(self, mime: str) -> None:
        """A MIME type not of the form type/subtype is INVALID_MIME_TYPE."""
        with pytest.raises(InvalidRequestError) as err:
            derive_requirements(Modality.TEXT, (), [mime])
        assert err.value.reason == "INVALID_MIME_TYPE"

    def test_unsupported_attachment(self) -> None:
        """A well-formed type no model of the modality takes is UNSUPPORTED_ATTACHMENT_TYPE."""
        with pytest.raises(PreconditionError) as err:
            derive_requirements(Modality.SPEECH, (), ["image/png"])
        assert err.value.reason == "UNSUPPORTED_ATTACHMENT_TYPE"
        with pytest.raises(PreconditionError):
            derive_requirements(Modality.TEXT, (), ["application/zip"])


class TestAutomatic:
    """Automatic selection follows the plan's default tier and the documented order."""

    def test_tier_order(self) -> None:
        """Start tier, higher ascending, lower descending."""
        assert tier_order(Tier.STANDARD) == (Tier.STANDARD, Tier.ADVANCED, Tier.LITE)
        assert tier_order(Tier.ADVANCED) == (Tier.ADVANCED, Tier.STANDARD, Tier.LITE)
        assert tier_order(Tier.LITE) == (Tier.LITE, Tier.STANDARD, Tier.ADVANCED)

    @pytest.mark.parametrize(
        ("plan", "modality", "expected"),
        [
            ("free", Modality.TEXT, "gemini-3.1-flash-lite"),
            ("pro", Modality.TEXT, "gemini-3-flash-preview"),
            ("business", Modality.TEXT, "claude-sonnet-4-6"),
            ("free", Modality.IMAGE, "openai/gpt-image-2"),
            ("pro", Modality.IMAGE, "fal-ai/gemini-25-flash-image"),
            ("business", Modality.IMAGE, "fal-ai/gemini-3-pro-image-preview"),
            ("free", Modality.VIDEO, "xai/grok-imagine-video"),
            ("pro", Modality.VIDEO, "fal-ai/veo3.1/fast"),
            ("business", Modality.VIDEO, "fal-ai/veo3.1/fast"),
            ("free", Modality.SPEECH, "gpt-4o-mini-tts"),
            ("pro", Modality.SPEECH, "fal-ai/elevenlabs/tts/turbo-v2.5"),
            ("business", Modality.SPEECH, "tts-1-hd"),
        ],
    )
    def test_default_per_modality_and_plan(self, plan: str, modality: Modality, expected: str) -> None:
        """Each plan's default tier (and preferred model) decides the first choice."""
        decision = SELECTOR.select(request(modality), account(plan))
        assert decision.model.id == expected
        assert decision.mode is SelectionMode.AUTOMATIC

    def test_chain_order_and_explanation(self) -> None:
        """Pro text: Standard (catalog order), then Advanced, then Lite; every other model explained."""
        decision = SELECTOR.select(request(), account("pro"))
        assert [m.id for m in decision.chain] == [
            "gemini-3-flash-preview",
            "gpt-5.4-mini",
            "claude-haiku-4-5",
            "gemini-3.1-pro-preview",
            "gpt-5.4",
            "gpt-5.5",
            "claude-sonnet-4-6",
            "claude-opus-4-6",
            "gemini-3.1-flash-lite",
            "gpt-5.4-nano",
        ]
        explained = {n.model_id: n.reason for n in decision.not_chosen}
        assert len(explained) == len(CATALOG.models) - 1
        assert explained["gpt-5.4-mini"] is NotChosenReason.RANKED_LOWER
        assert explained["openai/gpt-image-2"] is NotChosenReason.WRONG_MODALITY
        assert [n.model_id for n in decision.not_chosen] == [m.id for m in CATALOG.models if m.id != decision.model.id]

    def test_plan_preference_within_tier(self) -> None:
        """Business prefers claude-sonnet-4-6 then gpt-5.4, then the rest of Advanced in catalog order."""
        decision = SELECTOR.select(request(), account("business"))
        assert [m.id for m in decision.chain[:5]] == [
            "claude-sonnet-4-6",
            "gpt-5.4",
            "gemini-3.1-pro-preview",
            "gpt-5.5",
            "claude-opus-4-6",
        ]

    def test_capability_skips_models_that_lack_it(self) -> None:
        """Free text with audio input: only Gemini models take audio, Lite first."""
        decision = SELECTOR.select(request(Modality.TEXT, Capability.AUDIO_INPUT), account("free"))
        assert [m.id for m in decision.chain] == [
            "gemini-3.1-flash-lite",
            "gemini-3-flash-preview",
            "gemini-3.1-pro-preview",
        ]
        lacking = next(n for n in decision.not_chosen if n.model_id == "gpt-5.4-nano")
        assert lacking.reason is NotChosenReason.MISSING_CAPABILITY
        assert lacking.missing == {Capability.AUDIO_INPUT}

    def test_capability_fallback_to_next_tier(self) -> None:
        """Free video with multi-shot: no Lite model has it, so Standard's Kling V3 is chosen."""
        decision = SELECTOR.select(request(Modality.VIDEO, Capability.MULTI_SHOT), account("free"))
        assert decision.model.id == "fal-ai/kling-video/v3/standard"
        assert [m.id for m in decision.fallbacks] == ["fal-ai/kling-video/v3/pro"]

    def test_preferred_tier_overrides_plan(self) -> None:
        """A request's tier preference wins over the plan default."""
        decision = SELECTOR.select(request(preferred_tier=Tier.ADVANCED), account("free"))
        assert decision.model.tier is Tier.ADVANCED
        assert decision.start_tier is Tier.ADVANCED

    def test_language(self) -> None:
        """A speech language only some models speak narrows the choice; subtags match primaries."""
        with pytest.raises(PreconditionError) as err:
            SELECTOR.select(request(Modality.SPEECH, language="yo"), account("free"))
        assert err.value.reason == "NO_CAPABLE_MODEL"
        assert err.value.metadata["language"] == "yo"
        ceb = SELECTOR.select(request(Modality.SPEECH, language="ceb"), account("free"))
        assert ceb.model.id == "fal-ai/elevenlabs/tts/eleven-v3"
        assert SELECTOR.select(request(Modality.SPEECH, language="pt-BR"), account("free")).model.id == (
            "gpt-4o-mini-tts"
        )

    def test_no_capable_model_names_unmet_capabilities(self) -> None:
        """Speech with web search: NO_CAPABLE_MODEL naming WEB_SEARCH."""
        with pytest.raises(PreconditionError) as err:
            SELECTOR.select(request(Modality.SPEECH, Capability.WEB_SEARCH), account())
        assert err.value.reason == "NO_CAPABLE_MODEL"
        assert err.value.metadata["unmet_capabilities"] == "WEB_SEARCH"

    def test_no_single_model_has_all(self) -> None:
        """Capabilities offered separately but never together are reported as such."""
        with pytest.raises(PreconditionError) as err:
            SELECTOR.select(request(Modality.VIDEO, Capability.MULTI_SHOT, Capability.VIDEO_EDITING), account())
        assert err.value.reason == "NO_CAPABLE_MODEL"
        assert "no single" in err.value.message

    def test_deterministic(self) -> None:
        """The same request yields the same decision, from a fresh selector too."""
        a = SELECTOR.select(request(Modality.TEXT, Capability.WEB_SEARCH), account("pro"))
        b = Selector(load_catalog(None)).select(request(Modality.TEXT, Capability.WEB_SEARCH), account("pro"))
        assert a == b

    def test_cooling_down_models_are_skipped(self) -> None:
        """A model that is cooling down is passed over and explained as UNAVAILABLE."""
        decision = SELECTOR.select(request(), account(), CoolingDown("gemini-3.1-flash-lite"))
        assert decision.model.id == "gpt-5.4-nano"
        reasons = {n.model_id: n.reason for n in decision.not_chosen}
        assert reasons["gemini-3.1-flash-lite"] is NotChosenReason.UNAVAILABLE

    def test_all_cooling_down(self) -> None:
        """When every candidate cools down, the error says so."""
        ids = [m.id for m in CATALOG.models if m.modality is Modality.SPEECH]
        with pytest.raises(UnavailableError) as err:
            SELECTOR.select(request(Modality.SPEECH), account(), CoolingDown(*ids))
        assert err.value.reason == "ALL_MODELS_COOLING_DOWN"


class TestCredits:
    """The balance and the cost cap steer automatic selection (seam for the ledger)."""

    def test_steps_down_to_an_affordable_tier(self) -> None:
        """Pro text starts at Standard (3 credits); with 2 credits it steps down to Lite."""
        decision = SELECTOR.select(request(), account("pro", balance=2))
        assert decision.model.tier is Tier.LITE
        reasons = {n.model_id: n.reason for n in decision.not_chosen}
        assert reasons["gemini-3-flash-preview"] is NotChosenReason.CANNOT_AFFORD

    def test_nothing_affordable(self) -> None:
        """With no credits: INSUFFICIENT_CREDITS with the balance and the cheapest price."""
        with pytest.raises(ExhaustedError) as err:
            SELECTOR.select(request(Modality.VIDEO), account("pro", balance=5))
        assert err.value.reason == "INSUFFICIENT_CREDITS"
        assert err.value.metadata == {"balance": "5", "cheapest_price": "40"}

    def test_cost_cap(self) -> None:
        """A cap below Standard's price makes Pro fall to Lite; below every price it fails."""
        assert SELECTOR.select(request(max_credits=1), account("pro")).model.tier is Tier.LITE
        with pytest.raises(PreconditionError) as err:
            SELECTOR.select(request(Modality.VIDEO, max_credits=10), account("pro"))
        assert err.value.reason == "COST_CAP_TOO_LOW"


class TestPinned:
    """A pinned model is used as is, or the request fails; no other model is tried."""

    def test_pinned_is_used(self) -> None:
        """The pinned model is chosen with no fallbacks, even off the plan's default tier."""
        decision = SELECTOR.select(request(pinned_model_id="claude-opus-4-6"), account("free"))
        assert decision.model.id == "claude-opus-4-6"
        assert decision.mode is SelectionMode.PINNED
        assert decision.fallbacks == ()
        assert {n.reason for n in decision.not_chosen} == {NotChosenReason.NOT_PINNED}

    def test_unknown(self) -> None:
        """An unknown id is MODEL_NOT_FOUND."""
        with pytest.raises(NotFoundError) as err:
            SELECTOR.select(request(pinned_model_id="gpt-9"), account())
        assert err.value.reason == "MODEL_NOT_FOUND"

    def test_wrong_modality(self) -> None:
        """A text model pinned for an image request is MODEL_MODALITY_MISMATCH."""
        with pytest.raises(PreconditionError) as err:
            SELECTOR.select(request(Modality.IMAGE, pinned_model_id="gpt-5.4"), account())
        assert err.value.reason == "MODEL_MODALITY_MISMATCH"

    def test_missing_capability_is_named(self) -> None:
        """A pinned model without audio input fails naming AUDIO_INPUT; Gemini is not substituted."""
        with pytest.raises(PreconditionError) as err:
            SELECTOR.select(
                request(Modality.TEXT, Capability.AUDIO_INPUT, Capability.WEB_SEARCH, pinned_model_id="gpt-5.4-nano"),
                account(),
            )
        assert err.value.reason == "MODEL_MISSING_CAPABILITIES"
        assert err.value.metadata["missing_capabilities"] == "AUDIO_INPUT,WEB_SEARCH"

    def test_language(self) -> None:
        """A pinned speech model that does not speak the language fails."""
        with pytest.raises(PreconditionError) as err:
            SELECTOR.select(request(Modality.SPEECH, language="ceb", pinned_model_id="tts-1-hd"), account())
        assert err.value.reason == "UNSUPPORTED_LANGUAGE"

    def test_unaffordable_and_over_cap(self) -> None:
        """A pinned model beyond the balance or the cap fails; never a cheaper model."""
        with pytest.raises(ExhaustedError) as err:
            SELECTOR.select(request(pinned_model_id="gpt-5.5"), account(balance=9))
        assert err.value.reason == "INSUFFICIENT_CREDITS"
        assert err.value.metadata["model_id"] == "gpt-5.5"
        with pytest.raises(PreconditionError) as err2:
            SELECTOR.select(request(pinned_model_id="gpt-5.5", max_credits=3), account())
        assert err2.value.reason == "COST_CAP_EXCEEDED"


class TestVideoAttachments:
    """A video attachment asks for an edit unless the request says it is to be extended or used as
    a reference."""

    def test_video_uses(self) -> None:
        """An extension or a video reference does not also require editing; a bare video does."""
        video = ["video/mp4"]
        assert derive_requirements(Modality.VIDEO, (), video).capabilities == {Capability.VIDEO_EDITING}
        for use in (Capability.VIDEO_EXTENSION, Capability.VIDEO_REFERENCE):
            assert derive_requirements(Modality.VIDEO, (use,), video).capabilities == {use}
        both = (Capability.VIDEO_EXTENSION, Capability.VIDEO_EDITING)
        assert derive_requirements(Modality.VIDEO, both, video).capabilities == set(both)
        wanted = derive_requirements(Modality.VIDEO, (Capability.VIDEO_EXTENSION,), video)
        decision = SELECTOR.select(
            SelectionRequest("acct", wanted, pinned_model_id="fal-ai/veo3.1/fast"), account("pro")
        )
        assert decision.model.id == "fal-ai/veo3.1/fast"
