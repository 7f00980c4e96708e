"""Loads the config file (YAML or TOML) into the protobuf ``Config`` message, validates it and
turns it into the core's ``Catalog``.

The schema is the protobuf message itself, so an unknown key is rejected with the file and the
field named. Every other problem found raises ``ConfigError`` naming the file and the problem.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from switchboard.errors import ConfigError
from switchboard.types import Capability, Catalog, Modality, ModalityDefault, Model, Plan, Price, Task, Tier
from switchboard.v1 import catalog_pb2

DEFAULT_CONFIG = "default.yaml"
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def default_config_text() -> str:
    """The embedded default config: the seed catalog, example plans and prices."""
    return resources.files("switchboard.config").joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")


def load_config(path: str | Path | None) -> tuple[catalog_pb2.Config, str]:
    """Parse the config at ``path`` (the embedded default when None) into a ``Config`` message.

    Returns the message and the name used for it in messages.
    """
    if path is None:
        name, text = f"<embedded {DEFAULT_CONFIG}>", default_config_text()
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read the config file: {exc.strerror or exc}") from exc
    return parse_config(text, name), name


def parse_config(text: str, name: str) -> catalog_pb2.Config:
    """Parse YAML (or TOML when ``name`` ends in .toml) into a ``Config`` message."""
    data: Any
    try:
        data = tomllib.loads(text) if name.endswith(".toml") else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{name}: not valid {'TOML' if name.endswith('.toml') else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the config must be a mapping of the fields of switchboard.v1.Config")
    config = catalog_pb2.Config()
    try:
        json_format.ParseDict(data, config)
    except json_format.ParseError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    return config


def build_catalog(config: catalog_pb2.Config, name: str = "<config>") -> Catalog:
    """Validate ``config`` and resolve it into a ``Catalog``; raise ``ConfigError`` naming the problem."""
    problems: list[str] = []
    tier_prices = _tier_prices(config, problems)
    models: list[Model] = []
    seen: set[str] = set()
    for i, m in enumerate(config.models):
        where = f"models[{i}] ({m.id or 'no id'})"
        model = _model(m, where, tier_prices, problems)
        if m.id in seen:
            problems.append(f"{where}: duplicate model id {m.id!r}")
        seen.add(m.id)
        if model is not None:
            models.append(model)
    if not config.models:
        problems.append("models: the catalog has no models")
    by_id = {m.id: m for m in models}
    plans: dict[str, Plan] = {}
    for i, p in enumerate(config.plans):
        plan = _plan(p, f"plans[{i}] ({p.id or 'no id'})", by_id, problems)
        if plan is not None:
            if plan.id in plans:
                problems.append(f"plans[{i}]: duplicate plan id {plan.id!r}")
            plans[plan.id] = plan
    if not config.plans:
        problems.append("plans: at least one plan is required")
    if config.default_plan_id not in plans:
        problems.append(f"default_plan_id: {config.default_plan_id!r} is not one of the plans {sorted(plans)}")
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))
    return Catalog.build(tuple(models), plans, config.default_plan_id)


def load_catalog(path: str | Path | None) -> Catalog:
    """Load, validate and resolve the config at ``path`` (the embedded default when None)."""
    config, name = load_config(path)
    return build_catalog(config, name)


def _enum(cls: type[Modality] | type[Tier] | type[Capability] | type[Task], value: int) -> Any:
    try:
        return cls(value)
    except ValueError:
        return None


def _price(p: catalog_pb2.Price) -> Price:
    return Price(p.credits_per_request, p.credits_per_1k_input_tokens, p.credits_per_1k_output_tokens)


def _tier_prices(config: catalog_pb2.Config, problems: list[str]) -> dict[tuple[Modality | None, Tier], Price]:
    prices: dict[tuple[Modality | None, Tier], Price] = {}
    for i, tp in enumerate(config.tier_prices):
        tier = _enum(Tier, tp.tier)
        modality = _enum(Modality, tp.modality) if tp.modality else None
        if tier is None:
            problems.append(f"tier_prices[{i}]: tier is required")
            continue
        if tp.modality and modality is None:
            problems.append(f"tier_prices[{i}]: unknown modality {tp.modality}")
            continue
        if (modality, tier) in prices:
            problems.append(
                f"tier_prices[{i}]: a second price for {tier.name} {modality.name if modality else ''}".rstrip()
            )
        if (
            min(
                tp.price.credits_per_request,
                tp.price.credits_per_1k_input_tokens,
                tp.price.credits_per_1k_output_tokens,
            )
            < 0
        ):
            problems.append(f"tier_prices[{i}]: prices cannot be negative")
        prices[(modality, tier)] = _price(tp.price)
    return prices


def _model(
    m: catalog_pb2.Model,
    where: str,
    tier_prices: dict[tuple[Modality | None, Tier], Price],
    problems: list[str],
) -> Model | None:
    modality = _enum(Modality, m.modality)
    tier = _enum(Tier, m.tier)
    caps = [_enum(Capability, c) for c in m.capabilities]
    start = len(problems)
    for fld in ("id", "display_name", "provider"):
        if not getattr(m, fld).strip():
            problems.append(f"{where}: {fld} is required")
    if modality is None:
        problems.append(f"{where}: modality is required")
    if tier is None:
        problems.append(f"{where}: tier is required")
    if None in caps:
        problems.append(f"{where}: capabilities holds CAPABILITY_UNSPECIFIED or an unknown value")
    for lang in m.limits.languages:
        if not _LANGUAGE.match(lang):
            problems.append(f"{where}: {lang!r} is not a BCP-47 language code")
    if m.limits.context_window_tokens < 0 or m.limits.max_output_tokens < 0:
        problems.append(f"{where}: limits cannot be negative")
    if m.HasField("price"):
        price = _price(m.price)
        if min(price.per_request, price.per_1k_input_tokens, price.per_1k_output_tokens) < 0:
            problems.append(f"{where}: prices cannot be negative")
    elif modality is not None and tier is not None:
        found = tier_prices.get((modality, tier)) or tier_prices.get((None, tier))
        if found is None:
            problems.append(f"{where}: no price: the model has none and tier_prices has none for {tier.name}")
        price = found or Price()
    else:
        price = Price()
    endpoints: list[tuple[Capability, str]] = []
    for me in m.route.mode_endpoints:
        mode = _enum(Capability, me.capability)
        if mode is None or mode not in caps:
            problems.append(f"{where}: route.modeEndpoints names a mode that is not one of the model's capabilities")
        elif not me.endpoint.strip():
            problems.append(f"{where}: route.modeEndpoints for {mode.name} needs an endpoint")
        elif any(c is mode for c, _ in endpoints):
            problems.append(f"{where}: route.modeEndpoints names {mode.name} twice")
        else:
            endpoints.append((mode, me.endpoint.strip()))
    if len(problems) > start:
        return None
    return Model(
        id=m.id,
        display_name=m.display_name,
        provider=m.provider,
        modality=modality,
        tier=tier,
        description=m.description,
        capabilities=frozenset(c for c in caps if c is not None),
        price=price,
        adapter=m.route.adapter or m.provider.lower(),
        upstream_model=m.route.upstream_model or m.id,
        context_window_tokens=m.limits.context_window_tokens,
        max_output_tokens=m.limits.max_output_tokens,
        languages=tuple(m.limits.languages),
        mode_endpoints=tuple(endpoints),
    )


def _plan(p: catalog_pb2.Plan, where: str, models: dict[str, Model], problems: list[str]) -> Plan | None:
    start = len(problems)
    if not p.id.strip():
        problems.append(f"{where}: id is required")
    if p.monthly_credits < 0:
        problems.append(f"{where}: monthly_credits cannot be negative")
    if p.max_concurrent_requests < 0:
        problems.append(f"{where}: max_concurrent_requests cannot be negative")
    defaults: dict[Modality, ModalityDefault] = {}
    for j, d in enumerate(p.defaults):
        modality = _enum(Modality, d.modality)
        tier = _enum(Tier, d.tier)
        if modality is None or tier is None:
            problems.append(f"{where}: defaults[{j}] needs a modality and a tier")
            continue
        if modality in defaults:
            problems.append(f"{where}: defaults[{j}]: a second entry for {modality.name}")
        for mid in d.preferred_model_ids:
            model = models.get(mid)
            if model is None:
                problems.append(f"{where}: defaults[{j}]: unknown preferred model {mid!r}")
            elif model.modality is not modality:
                problems.append(f"{where}: defaults[{j}]: preferred model {mid!r} is not a {modality.name} model")
        task_tiers: dict[Task, Tier] = {}
        for k, tt in enumerate(d.task_tiers):
            task, task_tier = _enum(Task, tt.task), _enum(Tier, tt.tier)
            if task is None or task_tier is None:
                problems.append(f"{where}: defaults[{j}].task_tiers[{k}] needs a task and a tier")
            elif task in task_tiers:
                problems.append(f"{where}: defaults[{j}].task_tiers[{k}]: a second entry for {task.name}")
            else:
                task_tiers[task] = task_tier
        defaults[modality] = ModalityDefault(
            tier=tier, preferred_model_ids=tuple(d.preferred_model_ids), task_tiers=task_tiers
        )
    if len(problems) > start:
        return None
    return Plan(
        id=p.id,
        display_name=p.display_name or p.id,
        monthly_credits=p.monthly_credits,
        max_concurrent_requests=p.max_concurrent_requests,
        defaults=defaults,
    )
