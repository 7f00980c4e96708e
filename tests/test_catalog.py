"""The config loader and the seed catalog it ships."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchboard.catalog import build_catalog, default_config_text, load_catalog, parse_config
from switchboard.errors import ConfigError
from switchboard.types import Capability, Modality, Tier
from switchboard.v1 import catalog_pb2, router_pb2

ROOT = Path(__file__).resolve().parent.parent
SEED_COPY = Path(__file__).parent / "data" / "ai-models.txt"
SEED_SHARED = ROOT.parent / "shared" / "seed" / "ai-models.txt"
TIER_NAMES = {Tier.LITE: "Lite", Tier.STANDARD: "Standard", Tier.ADVANCED: "Advanced"}


def seed_rows(text: str) -> list[str]:
    """The model rows of the seed's four tables (the lines after each table's header)."""
    rows: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("ModelModel IDProviderTierDescription"):
            for row in lines[i + 1 :]:
                if not row.strip():
                    break
                rows.append(row.strip())
    return rows


class TestSeedCatalog:
    """The embedded config holds exactly the product catalog."""

    def test_copy_matches_shared_seed(self) -> None:
        """The test copy of the seed is the product's current source document."""
        if not SEED_SHARED.exists():
            pytest.skip("shared/seed is not beside this checkout")
        assert SEED_COPY.read_text(encoding="utf-8") == SEED_SHARED.read_text(encoding="utf-8")

    def test_every_seed_row_is_one_model_and_back(self) -> None:
        """Each seed row is one catalog model, field for field, and the catalog has nothing else."""
        rows = seed_rows(SEED_COPY.read_text(encoding="utf-8"))
        assert len(rows) == 28
        catalog = load_catalog(None)
        rendered = [f"{m.display_name}{m.id}{m.provider}{TIER_NAMES[m.tier]}{m.description}" for m in catalog.models]
        assert sorted(rendered) == sorted(rows)

    def test_counts_per_modality(self) -> None:
        """10 text, 5 image, 9 video and 4 speech models."""
        catalog = load_catalog(None)
        counts = {m: sum(1 for x in catalog.models if x.modality is m) for m in Modality}
        assert counts == {Modality.TEXT: 10, Modality.IMAGE: 5, Modality.VIDEO: 9, Modality.SPEECH: 4}

    def test_models_have_capabilities_and_prices(self) -> None:
        """Every model offers its modality's core capability set and has a positive price."""
        catalog = load_catalog(None)
        core = {
            Modality.IMAGE: Capability.IMAGE_GENERATION,
            Modality.VIDEO: Capability.TEXT_TO_VIDEO,
            Modality.SPEECH: Capability.TEXT_TO_SPEECH,
        }
        for m in catalog.models:
            assert m.price.per_request > 0, m.id
            if m.modality in core:
                assert core[m.modality] in m.capabilities, m.id
            if m.modality is Modality.SPEECH:
                assert m.languages, m.id
            if m.modality is Modality.TEXT:
                assert m.context_window_tokens > 0, m.id
        eleven = catalog.model("fal-ai/elevenlabs/tts/turbo-v2.5")
        assert eleven is not None
        assert len(eleven.languages) == 32

    def test_plans(self) -> None:
        """free, pro and business exist with growing allowances; free is the default."""
        catalog = load_catalog(None)
        assert catalog.default_plan_id == "free"
        allowances = [catalog.plans[p].monthly_credits for p in ("free", "pro", "business")]
        assert allowances == sorted(allowances)
        assert catalog.plans["business"].default_for(Modality.TEXT).tier is Tier.ADVANCED


class TestEnumsMatchProtos:
    """The core's enums carry the protobuf enums' names and numbers."""

    @pytest.mark.parametrize(
        ("core", "pb", "prefix"),
        [
            (Modality, catalog_pb2.Modality, "MODALITY_"),
            (Tier, catalog_pb2.Tier, "TIER_"),
            (Capability, catalog_pb2.Capability, "CAPABILITY_"),
        ],
    )
    def test_catalog_enums(self, core: type, pb: object, prefix: str) -> None:
        """Same members, same numbers, zero left unspecified."""
        pb_values = {n.removeprefix(prefix): v for n, v in pb.items() if v != 0}  # type: ignore[attr-defined]
        assert pb_values == {m.name: m.value for m in core}

    def test_router_enums(self) -> None:
        """NotChosenReason, SelectionMode, Role and FinishReason match router.proto."""
        from switchboard import types  # noqa: PLC0415

        for core, pb, prefix in (
            (types.NotChosenReason, router_pb2.NotChosenReason, "NOT_CHOSEN_REASON_"),
            (types.SelectionMode, router_pb2.SelectionMode, "SELECTION_MODE_"),
            (types.Role, router_pb2.Role, "ROLE_"),
            (types.FinishReason, router_pb2.FinishReason, "FINISH_REASON_"),
        ):
            pb_values = {n.removeprefix(prefix): v for n, v in pb.items() if v != 0}
            assert pb_values == {m.name: m.value for m in core}


class TestBadConfig:
    """A bad config is refused with a message naming the file and the problem."""

    def test_unknown_key_names_file_and_field(self, tmp_path: Path) -> None:
        """A misspelt key is rejected by the protobuf schema."""
        bad = tmp_path / "bad.yaml"
        bad.write_text(default_config_text().replace("displayName: GPT-5.4 Nano", "displayNme: GPT-5.4 Nano"))
        with pytest.raises(ConfigError) as err:
            load_catalog(bad)
        assert str(bad) in str(err.value)
        assert "displayNme" in str(err.value)

    def test_unknown_enum_value(self) -> None:
        """An enum value that does not exist is named."""
        with pytest.raises(ConfigError, match="TIER_PLATINUM"):
            parse_config(default_config_text().replace("tier: TIER_LITE\n", "tier: TIER_PLATINUM\n", 1), "x.yaml")

    def test_not_yaml(self) -> None:
        """Broken YAML is reported as such."""
        with pytest.raises(ConfigError, match=r"x.yaml: not valid YAML"):
            parse_config("models: [unclosed", "x.yaml")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is reported with its path."""
        with pytest.raises(ConfigError, match="cannot read"):
            load_catalog(tmp_path / "nope.yaml")

    def test_duplicate_ids_and_missing_price(self) -> None:
        """Consistency problems are all listed."""
        config = parse_config(default_config_text(), "c.yaml")
        config.models.append(config.models[0])
        del config.tier_prices[:]
        with pytest.raises(ConfigError) as err:
            build_catalog(config, "c.yaml")
        assert "duplicate model id 'gemini-3.1-flash-lite'" in str(err.value)
        assert "no price" in str(err.value)

    def test_plan_prefers_unknown_model(self) -> None:
        """A plan that prefers a model the catalog does not have is refused."""
        config = parse_config(default_config_text(), "c.yaml")
        config.plans[0].defaults[0].preferred_model_ids.append("gpt-9")
        with pytest.raises(ConfigError, match="unknown preferred model 'gpt-9'"):
            build_catalog(config, "c.yaml")

    def test_mode_endpoints_name_claimed_modes(self) -> None:
        """A route's mode endpoint must be for one of the model's capabilities, and not empty."""
        config = parse_config(default_config_text(), "c.yaml")
        veo = next(m for m in config.models if m.id == "fal-ai/veo3.1/fast")
        veo.route.mode_endpoints.add(capability=catalog_pb2.CAPABILITY_MULTI_SHOT, endpoint="fal-ai/x")
        with pytest.raises(ConfigError, match=r"fal-ai/veo3\.1/fast.*not one of the model's capabilities"):
            build_catalog(config, "c.yaml")
        del veo.route.mode_endpoints[-1]
        veo.route.mode_endpoints[0].endpoint = " "
        with pytest.raises(ConfigError, match="needs an endpoint"):
            build_catalog(config, "c.yaml")

    def test_default_plan_must_exist(self) -> None:
        """default_plan_id must name a plan."""
        config = parse_config(default_config_text(), "c.yaml")
        config.default_plan_id = "gold"
        with pytest.raises(ConfigError, match="default_plan_id: 'gold'"):
            build_catalog(config, "c.yaml")

    def test_toml_is_accepted(self, tmp_path: Path) -> None:
        """The same schema loads from TOML."""
        path = tmp_path / "small.toml"
        path.write_text(
            'defaultPlanId = "p"\n'
            '[[plans]]\nid = "p"\nmonthlyCredits = 10\n'
            '[[tierPrices]]\ntier = "TIER_LITE"\nprice = { creditsPerRequest = 2 }\n'
            '[[models]]\nid = "m"\ndisplayName = "M"\nprovider = "Acme"\nmodality = "MODALITY_TEXT"\n'
            'tier = "TIER_LITE"\n'
        )
        catalog = load_catalog(path)
        model = catalog.model("m")
        assert model is not None
        assert model.price.per_request == 2
        assert model.adapter == "acme"
