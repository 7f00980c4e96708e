"""Model selection: what a request requires, which models qualify, and in which order.

This is where the fallback order is decided. It is pure: no I/O, no gRPC. The same request,
account and model health always yield the same decision.

Automatic selection:
  1. Static filter (per plan, requirements and start tier; cached): models of the requested
     modality that offer every required capability and speak the requested language.
  2. Order: the start tier (the request's preferred tier, else the plan's default for the
     modality), then higher tiers ascending, then lower tiers descending; within a tier the
     plan's preferred models first, then catalog order.
  3. Dynamic filter, per request: skip models that are cooling down, cost more than the
     request's cap, or cost more than the account's balance.
  The first survivor is chosen; the others, in order, are the fallback chain.

Pinned selection uses the pinned model or fails; it never picks another model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from switchboard.errors import (
    ExhaustedError,
    InvalidRequestError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from switchboard.types import (
    AccountState,
    AlwaysAvailable,
    Capabilities,
    Capability,
    Catalog,
    Decision,
    HealthView,
    Modality,
    Model,
    NotChosen,
    NotChosenReason,
    Plan,
    Requirements,
    SelectionMode,
    SelectionRequest,
    Tier,
    TierRule,
)

_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MIME = re.compile(rf"^({_TOKEN})/({_TOKEN})\s*(;.*)?$")

# Attachment MIME type -> capability it requires, per modality. None: no capability needed.
_TEXT_ATTACHMENTS: dict[str, Capability | None] = {
    "image": Capability.IMAGE_INPUT,
    "audio": Capability.AUDIO_INPUT,
    "video": Capability.VIDEO_INPUT,
    "text": None,
    "application/pdf": Capability.DOCUMENT_INPUT,
    "application/json": None,
}
_ATTACHMENT_RULES: dict[Modality, dict[str, Capability | None]] = {
    Modality.TEXT: _TEXT_ATTACHMENTS,
    Modality.IMAGE: {"image": Capability.IMAGE_EDITING},
    Modality.VIDEO: {"image": Capability.IMAGE_TO_VIDEO, "video": Capability.VIDEO_EDITING},
    Modality.SPEECH: {},
}

_VIDEO_USES = frozenset({Capability.VIDEO_EXTENSION, Capability.VIDEO_REFERENCE})
"""Capabilities that say what a video attachment is for, other than an edit."""

ALWAYS_AVAILABLE = AlwaysAvailable()


def parse_mime_type(mime_type: str) -> tuple[str, str]:
    """Split ``type/subtype`` (parameters ignored), lower-cased; reject anything else."""
    match = _MIME.match(mime_type.strip())
    if match is None:
        raise InvalidRequestError(
            "INVALID_MIME_TYPE",
            f"{mime_type!r} is not a MIME type of the form type/subtype",
            {"mime_type": mime_type[:200]},
        )
    return match.group(1).lower(), match.group(2).lower()


def attachment_capability(modality: Modality, mime_type: str) -> Capability | None:
    """The capability an attachment of ``mime_type`` requires on a ``modality`` request."""
    kind, sub = parse_mime_type(mime_type)
    rules = _ATTACHMENT_RULES[modality]
    for key in (f"{kind}/{sub}", kind):
        if key in rules:
            return rules[key]
    raise PreconditionError(
        "UNSUPPORTED_ATTACHMENT_TYPE",
        f"no {modality.name.lower()} model accepts {kind}/{sub} attachments",
        {"mime_type": f"{kind}/{sub}", "modality": modality.name},
    )


def derive_requirements(
    modality: Modality,
    capabilities: Iterable[Capability] = (),
    attachment_mime_types: Iterable[str] = (),
    *,
    web_search: bool = False,
    structured_output: bool = False,
    tools: bool = False,
    reasoning: bool = False,
    language: str = "",
) -> Requirements:
    """Everything a request requires: its named capabilities plus those its attachments and
    options imply."""
    required = set(capabilities)
    for mime in attachment_mime_types:
        cap = attachment_capability(modality, mime)
        if cap is Capability.VIDEO_EDITING and required & _VIDEO_USES:
            continue  # the request says what to do with its video: extend it, or use it as a reference
        if cap is not None:
            required.add(cap)
    for wanted, cap in (
        (web_search, Capability.WEB_SEARCH),
        (structured_output, Capability.STRUCTURED_OUTPUT),
        (tools, Capability.TOOL_CALLING),
        (reasoning, Capability.REASONING),
    ):
        if wanted:
            required.add(cap)
    return Requirements(modality=modality, capabilities=frozenset(required), language=language)


def capability_names(caps: Iterable[Capability]) -> str:
    """Capabilities as a comma-separated list of names, in enum order (for error metadata)."""
    return ",".join(c.name for c in sorted(caps))


def tier_order(start: Tier) -> tuple[Tier, ...]:
    """The start tier, then higher tiers ascending, then lower tiers descending."""
    higher = [t for t in Tier if t > start]
    lower = [t for t in sorted(Tier, reverse=True) if t < start]
    return (start, *higher, *lower)


@dataclass(frozen=True, slots=True)
class _Static:
    """The cached part of an automatic decision: ordered candidates and static exclusions."""

    candidates: tuple[Model, ...]
    excluded: dict[str, NotChosen]
    flat_costs: tuple[int, ...] | None = None
    """Each candidate's price when none charges per token (the same for every request)."""


class Selector:
    """Chooses models from one catalog. Build a new one when the catalog changes."""

    _CACHE_LIMIT = 4096

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._static: dict[tuple[str, Requirements, Tier], _Static] = {}
        self._decisions: dict[tuple[object, ...], Decision] = {}
        self._not_pinned: dict[str, tuple[NotChosen, ...]] = {}  # per pinned model: the others

    def select(
        self,
        request: SelectionRequest,
        account: AccountState,
        health: HealthView = ALWAYS_AVAILABLE,
    ) -> Decision:
        """The decision for ``request`` on ``account``'s plan and balance, given model health."""
        if request.pinned_model_id:
            return self._pinned(request, account)
        return self._automatic(request, account, health)

    # ------------------------------------------------------------------ pinned

    def _pinned(self, request: SelectionRequest, account: AccountState) -> Decision:
        req = request.requirements
        model = self.catalog.model(request.pinned_model_id)
        if model is None:
            raise NotFoundError(
                "MODEL_NOT_FOUND",
                f"no model has the id {request.pinned_model_id!r}",
                {"model_id": request.pinned_model_id[:200]},
            )
        if model.modality is not req.modality:
            raise PreconditionError(
                "MODEL_MODALITY_MISMATCH",
                f"{model.id} is a {model.modality.name.lower()} model; the request wants {req.modality.name.lower()}",
                {"model_id": model.id, "model_modality": model.modality.name, "requested_modality": req.modality.name},
            )
        missing = req.capabilities - model.capabilities
        if missing:
            raise PreconditionError(
                "MODEL_MISSING_CAPABILITIES",
                f"{model.id} lacks {capability_names(missing)}",
                {"model_id": model.id, "missing_capabilities": capability_names(missing)},
            )
        if req.language and not model.speaks(req.language):
            raise PreconditionError(
                "UNSUPPORTED_LANGUAGE",
                f"{model.id} does not speak {req.language!r}",
                {"model_id": model.id, "language": req.language},
            )
        cost = self.estimate(model, request)
        if request.max_credits is not None and cost > request.max_credits:
            raise PreconditionError(
                "COST_CAP_EXCEEDED",
                f"{model.id} costs {cost} credits, over the request's cap of {request.max_credits}",
                {"model_id": model.id, "price": str(cost), "max_credits": str(request.max_credits)},
            )
        if account.balance is not None and cost > account.balance:
            raise insufficient_credits(account.balance, cost, model.id)
        not_chosen = self._not_pinned.get(model.id)
        if not_chosen is None:  # the same for every request pinning this model: built once
            not_chosen = self._not_pinned[model.id] = tuple(
                NotChosen(m.id, NotChosenReason.NOT_PINNED, detail=f"the request pinned {model.id}")
                for m in self.catalog.models
                if m.id != model.id
            )
        return Decision(
            model=model,
            mode=SelectionMode.PINNED,
            fallbacks=(),
            estimated_credits=cost,
            required=req.capabilities,
            start_tier=model.tier,
            not_chosen=not_chosen,
            plan_id=account.plan.id,
        )

    # --------------------------------------------------------------- automatic

    def _automatic(self, request: SelectionRequest, account: AccountState, health: HealthView) -> Decision:
        req = request.requirements
        plan = account.plan
        start, rule = start_tier(plan, req.modality, request)
        static = self._static_for(plan, req, start)
        if not static.candidates:
            raise self._no_capable_model(req)
        reasons: list[NotChosenReason | None] = []
        costs = static.flat_costs or tuple(self.estimate(m, request) for m in static.candidates)
        for model, cost in zip(static.candidates, costs, strict=True):
            if not health.is_available(model.id):
                reasons.append(NotChosenReason.UNAVAILABLE)
            elif request.max_credits is not None and cost > request.max_credits:
                reasons.append(NotChosenReason.OVER_COST_CAP)
            elif account.balance is not None and cost > account.balance:
                reasons.append(NotChosenReason.CANNOT_AFFORD)
            else:
                reasons.append(None)
        key = (plan.id, req, start, rule, tuple(reasons), costs, request.max_credits, account.balance)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._assemble(static, reasons, costs, request, account, start, rule)
            if len(self._decisions) >= self._CACHE_LIMIT:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _assemble(
        self,
        static: _Static,
        reasons: Sequence[NotChosenReason | None],
        costs: Sequence[int],
        request: SelectionRequest,
        account: AccountState,
        start: Tier,
        rule: TierRule,
    ) -> Decision:
        chain = [m for m, r in zip(static.candidates, reasons, strict=True) if r is None]
        if not chain:
            raise self._nothing_left(static, reasons, costs, request, account)
        dynamic: dict[str, NotChosen] = {}
        for model, reason, cost in zip(static.candidates, reasons, costs, strict=True):
            if reason is NotChosenReason.UNAVAILABLE:
                dynamic[model.id] = NotChosen(model.id, reason, detail="cooling down after repeated failures")
            elif reason is NotChosenReason.OVER_COST_CAP:
                dynamic[model.id] = NotChosen(
                    model.id, reason, detail=f"costs {cost}, over the cap of {request.max_credits}"
                )
            elif reason is NotChosenReason.CANNOT_AFFORD:
                dynamic[model.id] = NotChosen(
                    model.id, reason, detail=f"costs {cost}, over the balance of {account.balance}"
                )
        for position, model in enumerate(chain[1:], start=2):
            dynamic[model.id] = NotChosen(
                model.id, NotChosenReason.RANKED_LOWER, detail=f"fallback number {position - 1} in the chain"
            )
        chosen = chain[0]
        not_chosen = tuple(static.excluded.get(m.id) or dynamic[m.id] for m in self.catalog.models if m.id != chosen.id)
        return Decision(
            model=chosen,
            mode=SelectionMode.AUTOMATIC,
            fallbacks=tuple(chain[1:]),
            estimated_credits=costs[static.candidates.index(chosen)],
            required=request.requirements.capabilities,
            start_tier=start,
            not_chosen=not_chosen,
            plan_id=account.plan.id,
            tier_rule=rule,
        )

    def _static_for(self, plan: Plan, req: Requirements, start: Tier) -> _Static:
        key = (plan.id, req, start)
        found = self._static.get(key)
        if found is not None:
            return found
        excluded: dict[str, NotChosen] = {}
        qualified: list[Model] = []
        for model in self.catalog.models:
            if model.modality is not req.modality:
                excluded[model.id] = NotChosen(
                    model.id, NotChosenReason.WRONG_MODALITY, detail=f"a {model.modality.name.lower()} model"
                )
                continue
            missing = req.capabilities - model.capabilities
            if missing:
                excluded[model.id] = NotChosen(
                    model.id, NotChosenReason.MISSING_CAPABILITY, missing, f"lacks {capability_names(missing)}"
                )
            elif req.language and not model.speaks(req.language):
                excluded[model.id] = NotChosen(
                    model.id, NotChosenReason.UNSUPPORTED_LANGUAGE, detail=f"does not speak {req.language!r}"
                )
            else:
                qualified.append(model)
        preferred = plan.default_for(req.modality).preferred_model_ids
        rank_of_tier = {tier: i for i, tier in enumerate(tier_order(start))}
        catalog_pos = {m.id: i for i, m in enumerate(self.catalog.models)}

        def rank(model: Model) -> tuple[int, int, int]:
            pref = preferred.index(model.id) if model.id in preferred else len(preferred)
            return rank_of_tier[model.tier], pref, catalog_pos[model.id]

        ordered = tuple(sorted(qualified, key=rank))
        flat = all(not m.price.per_1k_input_tokens and not m.price.per_1k_output_tokens for m in ordered)
        static = _Static(
            candidates=ordered,
            excluded=excluded,
            flat_costs=tuple(m.price.per_request for m in ordered) if flat and ordered else None,
        )
        if len(self._static) >= self._CACHE_LIMIT:
            self._static.clear()
        self._static[key] = static
        return static

    def _no_capable_model(self, req: Requirements) -> PreconditionError:
        of_modality = [m for m in self.catalog.models if m.modality is req.modality]
        offered: set[Capability] = set()
        for m in of_modality:
            offered |= m.capabilities
        unmet: Capabilities = req.capabilities - offered
        metadata = {"modality": req.modality.name, "required_capabilities": capability_names(req.capabilities)}
        if unmet:
            metadata["unmet_capabilities"] = capability_names(unmet)
            message = f"no {req.modality.name.lower()} model offers {capability_names(unmet)}"
        elif req.language and not any(m.speaks(req.language) for m in of_modality):
            metadata["language"] = req.language
            message = f"no {req.modality.name.lower()} model speaks {req.language!r}"
        else:
            metadata["unmet_capabilities"] = ""
            message = (
                f"no single {req.modality.name.lower()} model offers all of "
                f"{capability_names(req.capabilities)}{' in ' + repr(req.language) if req.language else ''}"
            )
        return PreconditionError("NO_CAPABLE_MODEL", message, metadata)

    def _nothing_left(
        self,
        static: _Static,
        reasons: Sequence[NotChosenReason | None],
        costs: Sequence[int],
        request: SelectionRequest,
        account: AccountState,
    ) -> Exception:
        available = [c for c, r in zip(costs, reasons, strict=True) if r is not NotChosenReason.UNAVAILABLE]
        if NotChosenReason.CANNOT_AFFORD in reasons and account.balance is not None:
            within_cap = [c for c in available if request.max_credits is None or c <= request.max_credits]
            return insufficient_credits(account.balance, min(within_cap or available), "")
        if NotChosenReason.OVER_COST_CAP in reasons:
            return PreconditionError(
                "COST_CAP_TOO_LOW",
                f"every capable model costs more than the request's cap of {request.max_credits} credits",
                {"max_credits": str(request.max_credits), "cheapest_price": str(min(available))},
            )
        return UnavailableError(
            "ALL_MODELS_COOLING_DOWN",
            "every model that could serve the request is cooling down after repeated failures; retry later",
            {"models": ",".join(m.id for m in static.candidates)},
        )

    @staticmethod
    def estimate(model: Model, request: SelectionRequest) -> int:
        """The credits ``request`` is estimated to cost on ``model``."""
        output = request.output_tokens or model.max_output_tokens
        if not model.price.per_1k_output_tokens:
            output = 0
        return model.price.cost(request.input_tokens, output)


def start_tier(plan: Plan, modality: Modality, request: SelectionRequest) -> tuple[Tier, TierRule]:
    """Where automatic selection starts, and the rule that says so: the request's preferred tier,
    else the plan's tier for the request's task, else the plan's default tier for the modality."""
    if request.preferred_tier is not None:
        return request.preferred_tier, TierRule.PREFERRED_TIER
    defaults = plan.default_for(modality)
    if request.task is not None and request.task in defaults.task_tiers:
        return defaults.task_tiers[request.task], TierRule.TASK
    return defaults.tier, TierRule.PLAN_DEFAULT


def insufficient_credits(balance: int, price: int, model_id: str) -> ExhaustedError:
    """The error for a balance that does not cover the cheapest usable price."""
    metadata = {"balance": str(balance), "cheapest_price": str(price)}
    if model_id:
        metadata["model_id"] = model_id
    return ExhaustedError(
        "INSUFFICIENT_CREDITS",
        f"the balance of {balance} credits does not cover {price} credits"
        + (f" for {model_id}" if model_id else " for any capable model"),
        metadata,
    )
