"""Campaigns and their offers in the console: the list with each campaign's figures at a
glance, the campaign form (create, edit; activate, pause, end; delete a draft) and a
campaign's offers (list, create, edit; pause, resume, retire).

Every change goes through the API's own request schemas (CampaignIn, OfferIn, OfferPatch) and
the same service functions (api/audited.py over offers.campaigns, recording each change in the
audit trail), so a form is refused exactly where and why the API would refuse it, and the API's
messages are shown next to the field at fault. The offer form's rule types and parameters are
read off offers.rules' Rule union, never listed here.

Who: a merchant's admin changes things; a marketer reads the list and the offers; staff get
the 403 page; another merchant's (or a missing) campaign or offer is the 404 page.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from annotated_types import Ge, Le
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from api import audited
from api.console.pages import forbidden, not_found, parse_id, render
from api.console.session import ConsoleUser, check_csrf
from api.deps import Session, SettingsDep, merchant_of
from api.schemas import TIMEZONES, CampaignIn, OfferIn, OfferPatch
from core.auth import Principal, Role
from core.errors import NotFound, ProblemError, ValidationFailed
from geo import venues as venue_store
from geo.venues import Venue
from offers import campaigns as store
from offers.campaigns import OFFER_FROZEN_ONCE_ACTIVE, OFFER_TEXTS, TRANSITIONS, Campaign, Offer
from offers.overview import CampaignGlance, campaign_glances
from offers.power import DEFAULT_LIFT_PP, power_for_campaign
from offers.rules import Rule

router = APIRouter(prefix="/dashboard", include_in_schema=False)

MAX_LISTED = 200  # campaigns on the list page; a merchant with more sees a note
MAX_VENUES = 500  # venues offered in the campaign form
VENUES_NAMED = 3  # venues named in a list row before "and N more"
BLANK_WINDOWS = 2  # empty time-window rows the offer form offers beyond the offer's own
MAX_WINDOWS = 12  # as offers.rules.Schedule allows
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # ISO order: Monday = 1
MINUS = "\u2212"
# The list's order: what runs first, drafts next, finished last.
STATUS_ORDER = {"active": 0, "paused": 1, "draft": 2, "ended": 3}
CAMPAIGN_FIELDS = ("name", "venue_ids", "timezone", "starts_at", "ends_at", "holdout_percent", "attribution_days")
LIMIT_FIELDS = ("per_user_limit", "total_limit", "redeem_within_minutes")


def _is_admin(principal: Principal) -> bool:
    return principal.role == Role.MERCHANT_ADMIN


def _reads_campaigns(principal: Principal) -> bool:
    return principal.role in (Role.MERCHANT_ADMIN, Role.MARKETER)


@asynccontextmanager
async def all_or_nothing(session: AsyncSession) -> AsyncIterator[None]:
    """Run a service call in a savepoint. A refusal (any ProblemError) undoes what it wrote and
    forgets what it changed on loaded objects but did not write yet, so the page that shows
    the refusal commits nothing of it (the API gets the same by rolling the request back)."""
    try:
        async with session.begin_nested():
            yield
    except ProblemError:
        session.expunge_all()
        raise


# --------------------------------------------------------------------------- errors next to fields


def _field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error's location as the API names the field ("rule.nth_checkin.n")."""
    return ".".join(str(part) for part in loc) or "form"


def schema_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A request schema's refusal as the API's 422 lists it: [{field, code, message}]."""
    return [{"field": _field_path(e["loc"]), "code": e["type"], "message": e["msg"]} for e in exc.errors()]


def place_errors(errors: list[dict[str, Any]], slots: set[str]) -> dict[str, str]:
    """{slot: message}: each error goes to the most specific slot of the form that its field
    path starts with ("schedule.windows.0.start" to the row "schedule.windows.0"); one that
    fits no slot goes to "form", shown above the form. The first message per slot wins."""
    placed: dict[str, str] = {}
    for error in errors:
        parts = str(error["field"]).split(".")
        prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
        slot = next((prefix for prefix in prefixes if prefix in slots), "form")
        placed.setdefault(slot, str(error["message"]).removeprefix("Value error, "))
    return placed


# --------------------------------------------------------------------------- times and zones


def display_zone(venue_ids: Sequence[uuid.UUID], venues: dict[uuid.UUID, Venue]) -> str:
    """The zone a campaign's times are read and shown in: its venues' zone when they share one,
    else UTC (a campaign's start and end are instants; the zone only helps people read them)."""
    zones = {venues[v].timezone for v in venue_ids if v in venues}
    return zones.pop() if len(zones) == 1 else "UTC"


def merchant_zone(venues: Sequence[Venue]) -> str:
    """The zone most of the merchant's venues keep: the new campaign form's default."""
    zones = [venue.timezone for venue in venues]
    return max(sorted(set(zones)), key=zones.count) if zones else "UTC"


def local_input(moment: datetime, zone: str) -> str:
    """A datetime-local input's value: the moment on the zone's clock, to the minute."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


def parse_local(value: str, zone: str) -> datetime | None:
    """A datetime-local input's value read on the zone's clock; None when it is not one."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=ZoneInfo(zone)) if moment.tzinfo is None else None


def shown_time(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%-d %b %Y %H:%M")


# --------------------------------------------------------------------------- the campaign form


@dataclass(frozen=True)
class CampaignForm:
    """What the campaign form sent (or shows), as text: re-shown unchanged when refused."""

    name: str = ""
    venue_ids: tuple[str, ...] = ()
    timezone: str = "UTC"
    starts_at: str = ""
    ends_at: str = ""
    holdout_percent: str = ""
    attribution_days: str = ""

    @classmethod
    def blank(cls, zone: str, now: datetime) -> CampaignForm:
        start = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        return cls(
            timezone=zone,
            starts_at=local_input(start, zone),
            ends_at=local_input(start + timedelta(days=30), zone),
            holdout_percent=str(CampaignIn.model_fields["holdout_percent"].default),
            attribution_days=str(CampaignIn.model_fields["attribution_days"].default),
        )

    @classmethod
    def of(cls, campaign: Campaign, zone: str) -> CampaignForm:
        return cls(
            name=campaign.name,
            venue_ids=tuple(str(v) for v in campaign.venue_ids),
            timezone=zone,
            starts_at=local_input(campaign.starts_at, zone),
            ends_at=local_input(campaign.ends_at, zone),
            holdout_percent=str(campaign.holdout_percent),
            attribution_days=str(campaign.attribution_days),
        )

    @classmethod
    def sent(cls, form: FormData, current: CampaignForm) -> CampaignForm:
        """The posted form; a field it lacks (a disabled, frozen input) keeps its current value."""

        def text(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else str(getattr(current, name))

        return cls(
            name=text("name"),
            venue_ids=tuple(v for v in form.getlist("venue_ids") if isinstance(v, str)),
            timezone=text("timezone"),
            starts_at=text("starts_at"),
            ends_at=text("ends_at"),
            holdout_percent=text("holdout_percent"),
            attribution_days=text("attribution_days"),
        )


def check_campaign_form(form: CampaignForm) -> CampaignIn | list[dict[str, Any]]:
    """The form as the API's request body (CampaignIn), or the errors the API would list.
    Times are read on the chosen zone's clock."""
    errors: list[dict[str, Any]] = []
    body: dict[str, Any] = {
        "name": form.name.strip(),
        "venue_ids": list(form.venue_ids),
        "holdout_percent": form.holdout_percent.strip(),
        "attribution_days": form.attribution_days.strip(),
    }
    if form.timezone not in TIMEZONES:
        errors.append({"field": "timezone", "code": "unknown_timezone", "message": "choose a time zone from the list"})
    else:
        for name in ("starts_at", "ends_at"):
            moment = parse_local(getattr(form, name), form.timezone)
            if moment is None:
                errors.append({"field": name, "code": "datetime_parsing", "message": "enter a date and a time"})
            body[name] = moment
    try:
        checked = CampaignIn.model_validate(body)
    except ValidationError as exc:
        missing_times = {e["field"] for e in errors}
        return errors + [e for e in schema_errors(exc) if e["field"] not in missing_times]
    return errors or checked


def campaign_changes(campaign: Campaign, checked: CampaignIn) -> dict[str, Any]:
    """What the form changes: only differing fields are sent, so an unchanged frozen setting
    (the holdout of a campaign that has been active) is not a change."""
    wanted = checked.model_dump()
    current = {name: getattr(campaign, name) for name in wanted}
    changes = {name: value for name, value in wanted.items() if value != current[name]}
    if set(wanted["venue_ids"]) == set(campaign.venue_ids):
        changes.pop("venue_ids", None)
    return changes


# --------------------------------------------------------------------------- rules, from offers.rules


@dataclass(frozen=True)
class RuleParameter:
    name: str
    label: str
    minimum: int | None
    maximum: int | None

    def input_name(self, rule_type: str) -> str:
        return f"rule.{rule_type}.{self.name}"  # the API's field path of this parameter


@dataclass(frozen=True)
class RuleChoice:
    type: str
    label: str
    description: Markup
    parameters: tuple[RuleParameter, ...]

    def summary(self, rule: dict[str, Any]) -> str:
        shown = ", ".join(f"{p.label} = {rule.get(p.name)}" for p in self.parameters)
        return f"{self.label}: {shown}" if shown else self.label


def field_bounds(info: FieldInfo) -> dict[str, int | None]:
    """A whole-number field's min and max, from its schema's constraints (for the inputs' min/max)."""
    lows = [m.ge for m in info.metadata if isinstance(m, Ge)]
    highs = [m.le for m in info.metadata if isinstance(m, Le)]
    return {
        "min": next((low for low in lows if isinstance(low, int)), None),
        "max": next((high for high in highs if isinstance(high, int)), None),
    }


def _label(name: str) -> str:
    return name.replace("_", " ").replace("checkin", "check-in").capitalize()


def _described(doc: str | None) -> Markup:
    """A rule model's docstring as one paragraph, `names` set as code."""
    text = " ".join(inspect.cleandoc(doc).split()) if doc else ""
    pieces = text.split("`")
    return Markup("").join(
        escape(p) if i % 2 == 0 else Markup("<code>{}</code>").format(p) for i, p in enumerate(pieces)
    )


def rule_choices() -> dict[str, RuleChoice]:
    """Every rule type of the Rule union with its parameters and their bounds, in declaration
    order: the offer form is drawn from this."""
    union, _ = get_args(Rule)
    choices = {}
    for model in get_args(union):
        (rule_type,) = get_args(model.model_fields["type"].annotation)
        parameters = []
        for name, info in model.model_fields.items():
            if name == "type":
                continue
            bounds = field_bounds(info)
            parameters.append(RuleParameter(name, name.replace("_", " "), bounds["min"], bounds["max"]))
        choices[rule_type] = RuleChoice(rule_type, _label(rule_type), _described(model.__doc__), tuple(parameters))
    return choices


RULE_CHOICES = rule_choices()


def describe_rule(rule: dict[str, Any]) -> str:
    choice = RULE_CHOICES.get(str(rule.get("type")))
    return choice.summary(rule) if choice else str(rule.get("type"))


def describe_schedule(schedule: dict[str, Any] | None) -> str:
    """ "any time", "Mon, Fri 15:00–17:00", "every day 22:00–02:00"."""
    if not schedule:
        return "any time"
    days = schedule.get("weekdays") or []
    day_text = "every day" if len(days) == 7 else ", ".join(WEEKDAYS[d - 1] for d in days)
    windows = ", ".join(f"{w['start']}–{w['end']}" for w in schedule.get("windows") or [])
    return f"{day_text} {windows}" if windows else f"{day_text}, all day"


# --------------------------------------------------------------------------- the offer form


@dataclass(frozen=True)
class OfferForm:
    """What the offer form sent (or shows), as text."""

    title: str = ""
    description: str = ""
    terms: str = ""
    rule_type: str = ""
    parameters: dict[str, str] = field(default_factory=dict)  # "rule.<type>.<name>" -> text
    weekdays: tuple[str, ...] = tuple(str(d) for d in range(1, 8))
    windows: tuple[tuple[str, str], ...] = ()
    per_user_limit: str = ""
    total_limit: str = ""
    redeem_within_minutes: str = ""
    sent_fields: frozenset[str] = frozenset()  # which parts the post carried (disabled inputs are not sent)

    @classmethod
    def blank(cls) -> OfferForm:
        def default(name: str) -> str:
            value = OfferIn.model_fields[name].default
            return "" if value is None or not isinstance(value, int) else str(value)

        return cls(
            rule_type=next(iter(RULE_CHOICES)),
            per_user_limit=default("per_user_limit"),
            redeem_within_minutes=default("redeem_within_minutes"),
        )

    @classmethod
    def of(cls, offer: Offer) -> OfferForm:
        rule_type = str(offer.rule.get("type", ""))
        schedule = offer.schedule or {}
        return cls(
            title=offer.title,
            description=offer.description,
            terms=offer.terms,
            rule_type=rule_type,
            parameters={f"rule.{rule_type}.{k}": str(v) for k, v in offer.rule.items() if k != "type"},
            weekdays=tuple(str(d) for d in schedule.get("weekdays", range(1, 8))),
            windows=tuple((w["start"], w["end"]) for w in schedule.get("windows", [])),
            per_user_limit=str(offer.per_user_limit),
            total_limit=str(offer.total_limit),
            redeem_within_minutes=str(offer.redeem_within_minutes),
        )

    @classmethod
    def sent(cls, form: FormData) -> OfferForm:
        def text(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        windows = []
        for row in range(MAX_WINDOWS):
            start, end = text(f"schedule.windows.{row}.start"), text(f"schedule.windows.{row}.end")
            if start.strip() or end.strip():
                windows.append((start.strip(), end.strip()))
        parts = {name for name in (*OFFER_TEXTS, *LIMIT_FIELDS) if name in form}
        if "rule_type" in form:
            parts.add("rule")
        if "schedule_shown" in form:  # unticked weekdays send nothing: this says the schedule was in the form
            parts.add("schedule")
        return cls(
            title=text("title"),
            description=text("description"),
            terms=text("terms"),
            rule_type=text("rule_type"),
            parameters={name: text(name) for name in form if name.startswith("rule.")},
            weekdays=tuple(d for d in form.getlist("schedule.weekdays") if isinstance(d, str)),
            windows=tuple(windows),
            per_user_limit=text("per_user_limit"),
            total_limit=text("total_limit"),
            redeem_within_minutes=text("redeem_within_minutes"),
            sent_fields=frozenset(parts),
        )

    def rule(self) -> dict[str, Any]:
        choice = RULE_CHOICES.get(self.rule_type)
        names = choice.parameters if choice else ()
        return {
            "type": self.rule_type,
            **{p.name: self.parameters.get(p.input_name(self.rule_type), "") for p in names},
        }

    def schedule(self) -> dict[str, Any] | None:
        """None (any time) when every day is ticked and no window is given."""
        windows = [{"start": start, "end": end} for start, end in self.windows]
        if sorted(self.weekdays) == [str(d) for d in range(1, 8)] and not windows:
            return None
        return {"weekdays": list(self.weekdays), "windows": windows}

    def body(self, only: frozenset[str] | None = None) -> dict[str, Any]:
        """The API's request body; `only` keeps those fields (an edit sends what the form showed)."""
        everything: dict[str, Any] = {
            "title": self.title.strip(),
            "description": self.description.strip(),
            "terms": self.terms.strip(),
            "rule": self.rule(),
            "schedule": self.schedule(),
            **{name: getattr(self, name).strip() for name in LIMIT_FIELDS},
        }
        if only is None:
            return everything
        return {name: value for name, value in everything.items() if name in only}


def offer_error_slots() -> set[str]:
    slots = {*OFFER_TEXTS, *LIMIT_FIELDS, "rule", "schedule", "schedule.weekdays", "schedule.windows"}
    slots |= {p.input_name(c.type) for c in RULE_CHOICES.values() for p in c.parameters}
    slots |= {f"schedule.windows.{row}" for row in range(MAX_WINDOWS)}
    return slots


OFFER_SLOTS = offer_error_slots()
CAMPAIGN_SLOTS = set(CAMPAIGN_FIELDS)


def check_offer(model: type[BaseModel], body: dict[str, Any]) -> BaseModel | list[dict[str, Any]]:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        return schema_errors(exc)


# --------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class Headline:
    """The list's one-line effect: the absolute lift with its 95% interval once the stats are
    ready, else why there is none yet."""

    kind: Literal["not_started", "no_holdout", "srm_alert", "not_enough_data", "lift"]
    text: str
    interval: str = ""  # "95% interval +0.5 to +20.1" under a lift
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


def _pp(value: float) -> str:
    """A difference of shares in percentage points, signed, with a real minus: 0.021 -> +2.1."""
    return f"{value * 100:+.1f}".replace("-", MINUS)


def headline(campaign: Campaign, glance: CampaignGlance) -> Headline:
    lift = glance.effect.absolute_lift
    if campaign.activated_at is None:
        return Headline("not_started", "not started")
    if campaign.holdout_percent == 0:
        return Headline("no_holdout", "not measured: no holdout")
    if glance.status == "srm_alert":
        return Headline("srm_alert", "split check failed: see results")
    if glance.status != "ready" or lift is None:
        return Headline("not_enough_data", "not enough data yet")
    interval = f"95% interval {_pp(lift.ci_low)} to {_pp(lift.ci_high)} pp"
    return Headline("lift", f"{_pp(lift.estimate)} pp", interval, lift.estimate, lift.ci_low, lift.ci_high)


@dataclass(frozen=True)
class CampaignRow:
    id: uuid.UUID
    name: str
    status: str
    starts: str
    ends: str
    zone: str
    venues: str
    unlocks: int
    redemptions: int
    budget: int
    remaining: int
    headline: Headline


def named_venues(venue_ids: Sequence[uuid.UUID], venues: dict[uuid.UUID, Venue]) -> str:
    names = sorted((venues[v].name if v in venues else "a deleted venue" for v in venue_ids), key=str.casefold)
    if len(names) <= VENUES_NAMED:
        return ", ".join(names)
    return f"{', '.join(names[:VENUES_NAMED])} and {len(names) - VENUES_NAMED} more"


def campaign_row(campaign: Campaign, glance: CampaignGlance, venues: dict[uuid.UUID, Venue]) -> CampaignRow:
    zone = display_zone(campaign.venue_ids, venues)
    return CampaignRow(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        starts=shown_time(campaign.starts_at, zone),
        ends=shown_time(campaign.ends_at, zone),
        zone=zone,
        venues=named_venues(campaign.venue_ids, venues),
        unlocks=glance.unlocks,
        redemptions=glance.redemptions,
        budget=glance.budget,
        remaining=glance.remaining,
        headline=headline(campaign, glance),
    )


def list_order(campaign: Campaign) -> tuple[int, float, str]:
    return STATUS_ORDER.get(campaign.status, 9), -campaign.starts_at.timestamp(), campaign.name.casefold()


# --------------------------------------------------------------------------- what can be done


@dataclass(frozen=True)
class Action:
    name: str  # the URL's last part: activate, pause, end, delete
    label: str
    style: Literal["", "secondary", "danger"]
    confirm: str | None = None  # a final step: asked in a second click, with this explanation


def campaign_actions(campaign: Campaign) -> list[Action]:
    """The transitions the campaign's status allows (offers.campaigns.TRANSITIONS), and delete
    for a draft."""
    actions = []
    for name, (allowed_from, _) in TRANSITIONS.items():
        if campaign.status not in allowed_from:
            continue
        if name == "activate":
            actions.append(Action(name, "Resume" if campaign.status == "paused" else "Activate", ""))
        elif name == "pause":
            actions.append(Action(name, "Pause", "secondary"))
        else:
            actions.append(
                Action(
                    name, "End campaign", "danger", "Ending is final: no offer unlocks any more, and it cannot restart."
                )
            )
    if campaign.status == "draft":
        actions.append(Action("delete", "Delete draft", "danger", "The draft and its offers are deleted for good."))
    return actions


def offer_actions(campaign: Campaign, offer: Offer) -> list[Action]:
    """Status changes of an offer: pause or resume, and retire (for good)."""
    if campaign.status == "ended" or offer.status == "retired":
        return []
    toggle = Action("paused", "Pause", "secondary") if offer.status == "active" else Action("active", "Resume", "")
    retire = Action("retired", "Retire", "danger", "A retired offer never unlocks again and cannot be resumed.")
    return [toggle, retire]


def frozen_offer_fields(campaign: Campaign, offer: Offer | None) -> frozenset[str]:
    """What the offer form shows but does not let change (offers.campaigns.update_offer)."""
    if offer is None:
        return frozenset()
    everything = frozenset({*OFFER_TEXTS, *LIMIT_FIELDS, "rule", "schedule"})
    if campaign.status == "ended":
        return everything
    if offer.status == "retired":
        return everything - OFFER_TEXTS
    return OFFER_FROZEN_ONCE_ACTIVE if campaign.activated_at is not None else frozenset()


# --------------------------------------------------------------------------- loading


async def _merchant_venues(session: AsyncSession, principal: Principal) -> list[Venue]:
    found = await venue_store.list_venues(session, merchant_of(principal), after=None, limit=MAX_VENUES)
    return sorted(found, key=lambda v: v.name.casefold())


async def _own_campaign(session: AsyncSession, principal: Principal, raw_id: str) -> Campaign | None:
    campaign_id = parse_id(raw_id)
    if campaign_id is None:
        return None
    try:
        return await store.get_campaign(session, merchant_of(principal), campaign_id)
    except NotFound:
        return None


def _offer_in(campaign: Campaign, raw_id: str) -> Offer | None:
    offer_id = parse_id(raw_id)
    return next((offer for offer in campaign.offers if offer.id == offer_id), None)


# --------------------------------------------------------------------------- pages


async def _list_page(
    request: Request, principal: Principal, session: AsyncSession, problem: str | None = None, status_code: int = 200
) -> HTMLResponse:
    found = await store.list_campaigns(session, merchant_of(principal), after=None, limit=MAX_LISTED + 1)
    shown = sorted(found[:MAX_LISTED], key=list_order)
    venues = {v.id: v for v in await _merchant_venues(session, principal)}
    glances = await campaign_glances(session, shown, datetime.now(UTC).date())
    return render(
        request,
        "campaigns.html",
        principal,
        status_code=status_code,
        rows=[campaign_row(c, glances[c.id], venues) for c in shown],
        truncated=len(found) > MAX_LISTED,
        can_edit=_is_admin(principal),
        problem=problem,
    )


async def _campaign_form_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    *,
    campaign: Campaign | None,
    form: CampaignForm | None = None,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int | None = None,
) -> HTMLResponse:
    venues = await _merchant_venues(session, principal)
    if form is None:
        by_id = {v.id: v for v in venues}
        form = (
            CampaignForm.of(campaign, display_zone(campaign.venue_ids, by_id))
            if campaign
            else CampaignForm.blank(merchant_zone(venues), datetime.now(UTC))
        )
    errors = errors or {}
    zones = sorted({v.timezone for v in venues} | {"UTC", form.timezone} & TIMEZONES)
    return render(
        request,
        "campaign_form.html",
        principal,
        status_code=status_code or (422 if errors else 409 if problem else 200),
        campaign=campaign,
        form=form,
        errors=errors,
        problem=problem or errors.get("form"),
        venues=venues,
        zones=zones,
        bounds={name: field_bounds(CampaignIn.model_fields[name]) for name in ("holdout_percent", "attribution_days")},
        measurement_frozen=campaign is not None and campaign.activated_at is not None,
        ended=campaign is not None and campaign.status == "ended",
        actions=campaign_actions(campaign) if campaign else [],
        saved=request.query_params.get("saved") == "1",
        action=f"/dashboard/campaigns/{campaign.id}/edit" if campaign else "/dashboard/campaigns/new",
    )


async def _offers_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    campaign: Campaign,
    problem: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    remaining = await store.offer_remaining(session, [o.id for o in campaign.offers])
    notice = request.query_params.get("notice")
    power = None
    if notice == "created" and campaign.status != "ended":  # how long it will need, while still shaped
        power = await power_for_campaign(
            session, campaign.merchant_id, campaign.id, DEFAULT_LIFT_PP, datetime.now(UTC).date()
        )
    return render(
        request,
        "offers.html",
        principal,
        status_code=status_code,
        campaign=campaign,
        offers=campaign.offers,
        remaining=remaining,
        describe_rule=describe_rule,
        describe_schedule=describe_schedule,
        can_edit=_is_admin(principal),
        actions=campaign_actions(campaign),
        offer_actions=offer_actions,
        problem=problem,
        notice=notice,
        power=power,
    )


def _offer_form_page(
    request: Request,
    principal: Principal,
    *,
    campaign: Campaign,
    offer: Offer | None,
    form: OfferForm,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
) -> HTMLResponse:
    errors = errors or {}
    frozen = frozen_offer_fields(campaign, offer)
    rows = max(len(form.windows) + BLANK_WINDOWS, 1) if "schedule" not in frozen else len(form.windows)
    base = f"/dashboard/campaigns/{campaign.id}/offers"
    return render(
        request,
        "offer_form.html",
        principal,
        status_code=422 if errors else 409 if problem else 200,
        campaign=campaign,
        offer=offer,
        form=form,
        errors=errors,
        problem=problem or errors.get("form"),
        rules=list(RULE_CHOICES.values()),
        weekdays=list(enumerate(WEEKDAYS, start=1)),
        window_rows=[form.windows[i] if i < len(form.windows) else ("", "") for i in range(min(rows, MAX_WINDOWS))],
        limits={name: field_bounds(OfferIn.model_fields[name]) for name in LIMIT_FIELDS},
        frozen=frozen,
        budget_floor=offer.total_limit if offer is not None and campaign.activated_at is not None else None,
        action=f"{base}/{offer.id}/edit" if offer else f"{base}/new",
    )


TRANSITION_NAMES: dict[str, store.Action] = {name: name for name in TRANSITIONS}
BACK_TO = {
    "list": "/dashboard/campaigns",
    "edit": "/dashboard/campaigns/{id}/edit",
    "offers": "/dashboard/campaigns/{id}/offers",
}


# --------------------------------------------------------------------------- routes: campaigns


@router.get("/campaigns")
async def campaign_list(request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _reads_campaigns(principal):
        return forbidden(request, principal)
    return await _list_page(request, principal, session)


@router.get("/campaigns/new")
async def new_campaign_form(request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _is_admin(principal):
        return forbidden(request, principal)
    return await _campaign_form_page(request, principal, session, campaign=None)


@router.post("/campaigns/new")
async def create_campaign(
    request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    if not _is_admin(principal):
        return forbidden(request, principal)
    form = CampaignForm.sent(await request.form(), CampaignForm())
    checked = check_campaign_form(form)
    if isinstance(checked, list):
        errors = place_errors(checked, CAMPAIGN_SLOTS)
        return await _campaign_form_page(request, principal, session, campaign=None, form=form, errors=errors)
    try:
        async with all_or_nothing(session):
            campaign = await audited.create_campaign(session, principal, **checked.model_dump())
    except ValidationFailed as exc:
        errors = place_errors(exc.errors or [], CAMPAIGN_SLOTS)
        return await _campaign_form_page(request, principal, session, campaign=None, form=form, errors=errors)
    return RedirectResponse(f"/dashboard/campaigns/{campaign.id}/offers?notice=created", 303)


@router.get("/campaigns/{campaign_id}/edit")
async def edit_campaign_form(campaign_id: str, request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    if campaign is None:
        return not_found(request, principal)
    return await _campaign_form_page(request, principal, session, campaign=campaign)


@router.post("/campaigns/{campaign_id}/edit")
async def update_campaign(
    campaign_id: str, request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    if campaign is None:
        return not_found(request, principal)
    venues = {v.id: v for v in await _merchant_venues(session, principal)}
    form = CampaignForm.sent(await request.form(), CampaignForm.of(campaign, display_zone(campaign.venue_ids, venues)))
    checked = check_campaign_form(form)
    if isinstance(checked, list):
        errors = place_errors(checked, CAMPAIGN_SLOTS)
        return await _campaign_form_page(request, principal, session, campaign=campaign, form=form, errors=errors)
    key = campaign.id  # a refusal forgets the loaded objects (all_or_nothing)
    try:
        async with all_or_nothing(session):
            await audited.update_campaign(session, principal, key, campaign_changes(campaign, checked))
    except ValidationFailed as exc:
        errors = place_errors(exc.errors or [], CAMPAIGN_SLOTS)
        return await _refused_campaign_form(request, principal, session, key, form, errors=errors)
    except ProblemError as exc:
        return await _refused_campaign_form(request, principal, session, key, form, problem=exc.detail)
    return RedirectResponse(f"/dashboard/campaigns/{key}/edit?saved=1", 303)


async def _refused_campaign_form(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    campaign_id: uuid.UUID,
    form: CampaignForm,
    *,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
) -> HTMLResponse:
    """The form again after the service refused it, with the campaign as stored (reloaded: the
    refused change was forgotten)."""
    campaign = await store.get_campaign(session, merchant_of(principal), campaign_id)
    return await _campaign_form_page(
        request, principal, session, campaign=campaign, form=form, errors=errors, problem=problem
    )


@router.post("/campaigns/{campaign_id}/{action}")
async def campaign_action(
    campaign_id: str, action: str, request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    """Activate, pause, end (the API's transition) or delete a draft; then back to the page the
    button was on, or that page with the refusal."""
    await check_csrf(request, settings)
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    if campaign is None or action not in (*TRANSITION_NAMES, "delete"):
        return not_found(request, principal)
    back = (await request.form()).get("back")
    back = back if isinstance(back, str) and back in BACK_TO else "edit"
    key = campaign.id
    try:
        async with all_or_nothing(session):
            if action == "delete":
                await audited.delete_campaign(session, principal, key)
            else:
                await audited.transition(session, principal, key, TRANSITION_NAMES[action])
    except ProblemError as exc:
        campaign = await store.get_campaign(session, merchant_of(principal), key)
        if back == "list":
            return await _list_page(request, principal, session, problem=exc.detail, status_code=exc.status)
        if back == "offers":
            return await _offers_page(request, principal, session, campaign, problem=exc.detail, status_code=exc.status)
        return await _campaign_form_page(
            request, principal, session, campaign=campaign, problem=exc.detail, status_code=exc.status
        )
    if action == "delete":
        return RedirectResponse("/dashboard/campaigns", 303)
    return RedirectResponse(BACK_TO[back].format(id=key), 303)


# --------------------------------------------------------------------------- routes: offers


@router.get("/campaigns/{campaign_id}/offers")
async def offer_list(campaign_id: str, request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _reads_campaigns(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    if campaign is None:
        return not_found(request, principal)
    return await _offers_page(request, principal, session, campaign)


@router.get("/campaigns/{campaign_id}/offers/new")
async def new_offer_form(campaign_id: str, request: Request, principal: ConsoleUser, session: Session) -> Response:
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    if campaign is None:
        return not_found(request, principal)
    return _offer_form_page(request, principal, campaign=campaign, offer=None, form=OfferForm.blank())


@router.post("/campaigns/{campaign_id}/offers/new")
async def create_offer(
    campaign_id: str, request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    if campaign is None:
        return not_found(request, principal)
    form = OfferForm.sent(await request.form())
    checked = check_offer(OfferIn, form.body())
    if isinstance(checked, list):
        errors = place_errors(checked, OFFER_SLOTS)
        return _offer_form_page(request, principal, campaign=campaign, offer=None, form=form, errors=errors)
    assert isinstance(checked, OfferIn)
    key = campaign.id
    try:
        async with all_or_nothing(session):
            await audited.add_offer(
                session,
                principal,
                key,
                **checked.model_dump(exclude={"rule", "schedule"}),
                rule=checked.rule,
                schedule=checked.schedule,
            )
    except ProblemError as exc:
        campaign = await store.get_campaign(session, merchant_of(principal), key)
        errors = place_errors(exc.errors or [], OFFER_SLOTS)
        problem = None if errors else exc.detail
        return _offer_form_page(
            request, principal, campaign=campaign, offer=None, form=form, errors=errors, problem=problem
        )
    return RedirectResponse(f"/dashboard/campaigns/{key}/offers", 303)


@router.get("/campaigns/{campaign_id}/offers/{offer_id}/edit")
async def edit_offer_form(
    campaign_id: str, offer_id: str, request: Request, principal: ConsoleUser, session: Session
) -> Response:
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    offer = _offer_in(campaign, offer_id) if campaign else None
    if campaign is None or offer is None:
        return not_found(request, principal)
    return _offer_form_page(request, principal, campaign=campaign, offer=offer, form=OfferForm.of(offer))


@router.post("/campaigns/{campaign_id}/offers/{offer_id}/edit")
async def update_offer(
    campaign_id: str, offer_id: str, request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    await check_csrf(request, settings)
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    offer = _offer_in(campaign, offer_id) if campaign else None
    if campaign is None or offer is None:
        return not_found(request, principal)
    form = OfferForm.sent(await request.form())
    # Only what the form showed as editable is sent (disabled inputs are not posted); a forged
    # post of a frozen field is refused by update_offer like the API's PATCH.
    checked = check_offer(OfferPatch, form.body(only=form.sent_fields))
    if isinstance(checked, list):
        errors = place_errors(checked, OFFER_SLOTS)
        shown = _merge(OfferForm.of(offer), form)
        return _offer_form_page(request, principal, campaign=campaign, offer=offer, form=shown, errors=errors)
    changes = {name: getattr(checked, name) for name in checked.model_fields_set}
    key, offer_key = campaign.id, offer.id
    try:
        async with all_or_nothing(session):
            await audited.update_offer(session, principal, offer_key, changes)
    except ProblemError as exc:
        campaign = await store.get_campaign(session, merchant_of(principal), key)
        offer = _offer_in(campaign, offer_id)
        if offer is None:
            return not_found(request, principal)
        errors = place_errors(exc.errors or [], OFFER_SLOTS)
        problem = None if errors else exc.detail
        shown = _merge(OfferForm.of(offer), form)
        return _offer_form_page(
            request, principal, campaign=campaign, offer=offer, form=shown, errors=errors, problem=problem
        )
    return RedirectResponse(f"/dashboard/campaigns/{key}/offers", 303)


def _merge(current: OfferForm, sent: OfferForm) -> OfferForm:
    """The form to show again: what was sent, and the stored values of the parts not sent."""
    values = {}
    for name in ("title", "description", "terms", *LIMIT_FIELDS):
        values[name] = getattr(sent if name in sent.sent_fields else current, name)
    rule_from = sent if "rule" in sent.sent_fields else current
    schedule_from = sent if "schedule" in sent.sent_fields else current
    return OfferForm(
        **values,
        rule_type=rule_from.rule_type,
        parameters=rule_from.parameters,
        weekdays=schedule_from.weekdays,
        windows=schedule_from.windows,
        sent_fields=sent.sent_fields,
    )


@router.post("/campaigns/{campaign_id}/offers/{offer_id}/status")
async def change_offer_status(
    campaign_id: str, offer_id: str, request: Request, principal: ConsoleUser, session: Session, settings: SettingsDep
) -> Response:
    """Pause, resume or retire an offer (PATCH /v1/offers/{id} with a status)."""
    await check_csrf(request, settings)
    if not _is_admin(principal):
        return forbidden(request, principal)
    campaign = await _own_campaign(session, principal, campaign_id)
    offer = _offer_in(campaign, offer_id) if campaign else None
    if campaign is None or offer is None:
        return not_found(request, principal)
    checked = check_offer(OfferPatch, {"status": (await request.form()).get("status")})
    if isinstance(checked, list) or not isinstance(checked, OfferPatch) or checked.status is None:
        problem = checked[0]["message"] if isinstance(checked, list) else "choose active, paused or retired"
        return await _offers_page(request, principal, session, campaign, problem=problem, status_code=422)
    key, offer_key = campaign.id, offer.id
    try:
        async with all_or_nothing(session):
            await audited.update_offer(session, principal, offer_key, {"status": checked.status})
    except ProblemError as exc:
        campaign = await store.get_campaign(session, merchant_of(principal), key)
        return await _offers_page(request, principal, session, campaign, problem=exc.detail, status_code=exc.status)
    return RedirectResponse(f"/dashboard/campaigns/{key}/offers", 303)
