"""The emulator's state and its request pipeline, independent of any HTTP server.

:meth:`Emulator.handle` decides, under one lock and in arrival order, what an API call gets:
auth -> rate limit -> injected faults -> failing/hostile lead or drawn hostile answer (Lead.Reset only)
-> request validation -> lead existence -> success (then performed, later, or never).
The web layer (:mod:`lsq_emulator.app`) only turns the resulting :class:`Answer` into bytes on the wire.
"""

from __future__ import annotations

import copy
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from lsq_emulator import errors
from lsq_emulator.activities import parse_activity_query, retrieve
from lsq_emulator.config import Account, EmulatorConfig, api_host
from lsq_emulator.faults import (
    FAULT_5XX,
    FAULT_DROP,
    FAULT_HTML,
    FAULT_NON_JSON,
    FAULT_TIMEOUT,
    FAULT_TRICKLE,
    FateDice,
    FaultDice,
)
from lsq_emulator.hostile import HOSTILE_KINDS, hostile_answer
from lsq_emulator.rate_limit import SlidingWindowLimiter
from lsq_emulator.store import RECORD_KINDS, RESET_STATES, LeadStore
from lsq_emulator.validation import parse_json_body, validate_reset

OUTCOMES = (
    "queued",
    "rejected",
    "unauthorized",
    "rate_limited",
    "fault_5xx",
    "timeout",
    "dropped",
    "html",
    "non_json",
    "not_found_path",
    "ok",
    *HOSTILE_KINDS,
)
NOT_QUEUED = "not_queued"  # reset_state of a Lead.Reset call not answered Success: nothing will be performed
RAW_BODY_LIMIT = 4096
JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Endpoint:
    """One emulated API operation."""

    name: str
    method: str
    admin_only: bool = False
    any_region: bool = False


ENDPOINTS = {
    "/v2/leadmanagement.svc/lead.reset": Endpoint("reset", "POST", admin_only=True),
    "/v2/authentication.svc/userbyaccesskey.get": Endpoint("user", "GET", any_region=True),
    "/v2/leadmanagement.svc/leads.getbyid": Endpoint("get_lead", "GET"),
    "/v2/prospectactivity.svc/retrieve": Endpoint("activities", "POST"),
}


@dataclass(frozen=True)
class ApiRequest:
    """What the web layer hands over; the key values are used for auth only, never recorded."""

    method: str
    path: str
    query: str
    content_type: str | None
    body: bytes
    header_access_key: str | None = field(default=None, repr=False)
    header_secret_key: str | None = field(default=None, repr=False)


@dataclass
class Answer:
    """The decided response: ``kind`` is ``body``, ``hang`` (sleep ``delay`` then send), ``drop`` or
    ``trickle`` (the body one byte at a time)."""

    status: int
    payload: bytes
    content_type: str
    delay: float
    kind: str
    record: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class Emulator:
    """Holds leads, settings, rate-limit logs and the call log; every method is thread-safe."""

    def __init__(self, config: EmulatorConfig | None = None, leads: Iterable[dict[str, Any]] = ()) -> None:
        self._lock = threading.RLock()
        self._config = config or EmulatorConfig()
        self._store = LeadStore()
        self._store.add(list(leads))
        self._limiter = SlidingWindowLimiter(self._config.rate_limit, self._config.rate_window_seconds)
        self._dice = FaultDice(self._config.seed)
        self._fates = FateDice(self._config.seed)
        self._keys = {a.access_key: a for a in self._config.accounts}
        self._calls: list[dict[str, Any]] = []
        self._day = SlidingWindowLimiter(1, 86_400.0)  # the daily quota, sized per call from the config
        self._seq = 0
        self.stopping = threading.Event()
        self.base_url: str | None = None

    # --- settings and state -------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """The settings in force."""
        with self._lock:
            return self._config

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change settings at runtime (validated, all or none); a new ``seed`` restarts the dice."""
        with self._lock:
            new = self._config.replace(**changes)
            self._config = new
            self._limiter.reconfigure(new.rate_limit, new.rate_window_seconds)
            self._keys = {a.access_key: a for a in new.accounts}
            if "seed" in changes:
                self._dice = FaultDice(new.seed)
                self._fates = FateDice(new.seed)
            return new

    def add_leads(self, leads: Iterable[dict[str, Any]]) -> int:
        """Add or replace leads (by ProspectId, case-insensitive); return how many."""
        with self._lock:
            return self._store.add(list(leads))

    def lead(self, lead_id: str) -> dict[str, Any] | None:
        """What the lead holds now (a copy, queued resets that are due applied), or ``None``."""
        with self._lock:
            return self._store.get(lead_id, time.monotonic())

    def leads(self) -> list[dict[str, Any]]:
        """Every lead as it is now."""
        with self._lock:
            return self._store.all(time.monotonic())

    def calls(self) -> list[dict[str, Any]]:
        """The call log (copies of CallRecord dicts) in arrival order, each ``reset_state`` as of now."""
        with self._lock:
            states = {r.seq: r.state for r in self._store.resets(time.monotonic())}
            out = copy.deepcopy(self._calls)
            for record in out:
                record["reset_state"] = states.get(record["seq"], record["reset_state"])
            return out

    def resets(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every reset answered Success (optionally only those in ``state``), in acceptance order."""
        with self._lock:
            found = self._store.resets(time.monotonic())
            return [r.public() for r in found if state is None or r.state == state]

    def freeze(self, seconds: float) -> None:
        """Stall the whole server for ``seconds`` (a long GC pause, an overloaded host): every call waits,
        and calls sent meanwhile are carried out after it, though their clients may have timed out.

        Calls are decided on the server's event loop under this lock, so holding it stalls the loop.
        """
        with self._lock:
            time.sleep(seconds)

    def clear_calls(self) -> None:
        """Empty the call log (and so the stats); rate-limit windows and leads are kept."""
        with self._lock:
            self._calls.clear()

    def clear_rate_limits(self) -> None:
        """Forget every account's rate-limit window."""
        with self._lock:
            self._limiter.clear()

    def stats(self) -> dict[str, Any]:
        """Counts over the call log (by outcome, rate-limited by style, queued resets by lead) and
        over the accepted resets (``resets_by_state``: state -> {lead id: count})."""
        with self._lock:
            by_state: dict[str, Counter[str]] = {state: Counter() for state in RESET_STATES}
            for reset in self._store.resets(time.monotonic()):
                by_state[reset.state][reset.lead_id] += 1
            by_outcome = dict.fromkeys(OUTCOMES, 0)
            rate_limited = {"429": 0, "200": 0, "403": 0}
            accepted: Counter[str] = Counter()
            for record in self._calls:
                by_outcome[record["outcome"]] += 1
                if record["outcome"] == "rate_limited":
                    rate_limited[record["rate_limit_style"]] += 1
                elif record["outcome"] == "queued":
                    lead_id = record["lead_id"]
                    accepted[self._store.canonical_id(lead_id) or lead_id] += 1
            return {
                "calls": len(self._calls),
                "by_outcome": by_outcome,
                "rate_limited": rate_limited,
                "accepted_by_lead": dict(accepted),
                "pending_resets": self._store.pending_count,
                "resets_by_state": {state: dict(counts) for state, counts in by_state.items()},
            }

    # --- the request pipeline ------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> Answer:
        """Decide the answer to one API call and log it (duration filled in by :meth:`finish`)."""
        parsed = self._loose_json(request.body)
        params = self._query_params(request.query)
        with self._lock:
            now, config = time.monotonic(), self._config
            self._seq += 1
            record: dict[str, Any] = {
                "seq": self._seq,
                "time": time.time(),
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "account": None,
                "lead_id": self._lead_id_of(parsed, params),
                "body": parsed,
                "raw_body": request.body.decode("utf-8", "replace")[:RAW_BODY_LIMIT],
                "status": 0,
                "outcome": "",
                "exception_type": None,
                "rate_limit_style": None,
                "reset_state": None,
                "duration": None,
            }
            self._calls.append(record)
            endpoint = ENDPOINTS.get(request.path.rstrip("/").lower())
            if endpoint is None or endpoint.method != request.method.upper():
                return self._error(
                    record,
                    404,
                    "not_found_path",
                    errors.API_NOT_FOUND,
                    f"The API {request.method} {request.path} could not be found. Check the API signature.",
                    0.0,
                )
            draw = self._dice.draw(config)
            hostile = self._fates.hostile(config)
            if endpoint.name == "reset":
                record["reset_state"] = NOT_QUEUED
            account, problem = self._authenticate(request, params, endpoint, config)
            record["account"] = account.name if account else None
            if problem is not None:
                return self._error(record, 401, "unauthorized", errors.UNAUTHORIZED, problem, draw.latency)
            assert account is not None
            if draw.burst or not self._limiter.admit(account.name, now):
                record["rate_limit_style"] = config.rate_limit_style
                message = errors.rate_limit_message(config.rate_limit, config.rate_window_seconds)
                return self._error(
                    record,
                    int(config.rate_limit_style),
                    "rate_limited",
                    errors.RATE_LIMITED,
                    message,
                    draw.latency,
                )
            if not self._admit_today(account.name, now, config):
                record["rate_limit_style"] = config.rate_limit_style
                record["daily_quota"] = True
                message = (
                    errors.rate_limit_message(config.daily_limit or 0, config.day_seconds)
                    if config.daily_message_names_window
                    else errors.DAILY_QUOTA_MESSAGE
                )
                return self._error(
                    record, int(config.rate_limit_style), "rate_limited", errors.RATE_LIMITED, message, draw.latency
                )
            if draw.fault is not None and draw.fault != FAULT_TRICKLE:
                return self._fault(record, draw.fault, draw.latency, config)
            if endpoint.name == "reset":
                lead_key = str(record["lead_id"]).strip().lower()
                if lead_key in config.failing_leads:
                    return self._fault(record, FAULT_5XX, draw.latency, config)
                hostile = config.hostile_leads.get(lead_key, hostile)
                if hostile is not None:
                    return self._hostile(record, hostile, request, draw.latency, config)
            try:
                status, body, outcome = self._dispatch(endpoint, request, params, account, now, config, record)
            except errors.RequestRejected as exc:
                return self._error(record, exc.status, "rejected", exc.exception_type, exc.message, draw.latency)
            record.update(status=status, outcome=outcome)
            if draw.fault == FAULT_TRICKLE:
                record["trickled"] = True
                return Answer(status, _json_bytes(body), JSON_TYPE, draw.latency, "trickle", record)
            return Answer(status, _json_bytes(body), JSON_TYPE, draw.latency, "body", record)

    def _admit_today(self, account: str, now: float, config: EmulatorConfig) -> bool:
        """The daily quota (rolling ``day_seconds``): admitted calls count; a refused call does not."""
        if config.daily_limit is None:
            return True
        self._day.reconfigure(config.daily_limit, config.day_seconds)
        return self._day.admit(account, now)

    def finish(self, answer: Answer, duration: float) -> None:
        """Record how long the call took, arrival to response."""
        with self._lock:
            answer.record["duration"] = round(duration, 6)

    # --- pipeline steps (called with the lock held) ----------------------------------------------

    @staticmethod
    def _loose_json(raw: bytes) -> Any:
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            return None

    @staticmethod
    def _query_params(query: str) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(key.lower(), value)
        return params

    @staticmethod
    def _lead_id_of(parsed: Any, params: dict[str, str]) -> str | None:
        if isinstance(parsed, dict) and isinstance(parsed.get("ProspectId"), str):
            return parsed["ProspectId"]
        return params.get("id") or params.get("leadid")

    def _authenticate(
        self, request: ApiRequest, params: dict[str, str], endpoint: Endpoint, config: EmulatorConfig
    ) -> tuple[Account | None, str | None]:
        if request.header_access_key or request.header_secret_key:
            access, secret = request.header_access_key, request.header_secret_key
        else:
            access, secret = params.get("accesskey"), params.get("secretkey")
        if not access or not secret:
            return None, (
                "AccessKey and SecretKey are mandatory: send the x-LSQ-AccessKey and x-LSQ-SecretKey "
                "headers (or the accessKey and secretKey query parameters)."
            )
        account = self._keys.get(access)
        if account is None or not hmac.compare_digest(secret.encode(), account.secret_key.encode()):
            return None, "Invalid AccessKey or SecretKey. Check your AccessKey and SecretKey."
        if not endpoint.any_region and account.region.lower() != config.region.lower():
            return account, (
                "Invalid AccessKey or SecretKey for this host: the account belongs to another region; "
                "call its own API host (see UserByAccessKey.Get)."
            )
        if endpoint.admin_only and not account.admin:
            return account, "Access denied: only the keys of an Administrator can reset a lead."
        return account, None

    def _error(
        self,
        record: dict[str, Any],
        status: int,
        outcome: str,
        exception_type: str,
        message: str,
        delay: float,
    ) -> Answer:
        record.update(status=status, outcome=outcome, exception_type=exception_type)
        body = _json_bytes(errors.error_body(exception_type, message))
        return Answer(status, body, JSON_TYPE, delay, "body", record)

    def _fault(self, record: dict[str, Any], fault: str, delay: float, config: EmulatorConfig) -> Answer:
        if fault == FAULT_5XX:
            return self._error(
                record,
                500,
                "fault_5xx",
                errors.INTERNAL,
                "The API call failed because of an internal error. Please try again later.",
                delay,
            )
        record["outcome"] = fault
        if fault == FAULT_TIMEOUT:
            record["status"] = 504
            return Answer(504, errors.HTML_504, "text/html", config.hang_seconds, "hang", record)
        if fault == FAULT_DROP:
            return Answer(0, b"", JSON_TYPE, delay, "drop", record)
        if fault == FAULT_HTML:
            record["status"] = 502
            return Answer(502, errors.HTML_502, "text/html", delay, "body", record)
        assert fault == FAULT_NON_JSON
        record["status"] = 200
        return Answer(200, errors.NON_JSON_200, "text/plain; charset=utf-8", delay, "body", record)

    def _hostile(
        self, record: dict[str, Any], kind: str, request: ApiRequest, delay: float, config: EmulatorConfig
    ) -> Answer:
        answer = hostile_answer(kind, config.redirect_url, request.path, request.query)
        record.update(status=answer.status, outcome=kind)
        return Answer(answer.status, answer.payload, answer.content_type, delay, "body", record, answer.headers)

    def _accept_reset(self, request: ApiRequest, record: dict[str, Any], now: float, config: EmulatorConfig) -> None:
        order = validate_reset(parse_json_body(request.content_type, request.body))
        self._store.apply_due(now)
        lead_id = self._store.canonical_id(order.prospect_id)
        if lead_id is None:
            raise errors.lead_not_found(config.missing_lead_status)
        unlucky = self._fates.unperformed(config)
        performs = not unlucky and lead_id.lower() not in config.unperformed_leads
        accepted = self._store.accept(
            record["seq"], order, now, config.reset_processing_delay_seconds, performs=performs
        )
        record["reset_state"] = accepted.state

    def _dispatch(
        self,
        endpoint: Endpoint,
        request: ApiRequest,
        params: dict[str, str],
        account: Account,
        now: float,
        config: EmulatorConfig,
        record: dict[str, Any],
    ) -> tuple[int, Any, str]:
        if endpoint.name == "reset":
            self._accept_reset(request, record, now, config)
            return 200, errors.queued_body(), "queued"
        if endpoint.name == "user":
            return 200, self._user(account), "ok"
        if endpoint.name == "get_lead":
            lead_id = params.get("id", "").strip()
            if not lead_id:
                raise errors.RequestRejected(errors.MANDATORY_MISSING, "Mandatory parameter id is missing")
            lead = self._store.get(lead_id, now)
            fields = [{k: v for k, v in lead.items() if k not in RECORD_KINDS}] if lead else []
            return 200, fields, "ok"
        return 200, self._activities(request, params, now, config), "ok"

    @staticmethod
    def _user(account: Account) -> dict[str, Any]:
        return {
            "Id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"user/{account.name}/{account.access_key}")),
            "FirstName": account.name,
            "LastName": "",
            "EmailAddress": f"{account.name}@example.com",
            "Role": "Administrator" if account.admin else "Sales User",
            "OrgId": account.org,
            "TimeZone": "Asia/Kolkata",
            "Region": account.region,
            "LSQApiHost": api_host(account.region),
        }

    def _activities(
        self, request: ApiRequest, params: dict[str, str], now: float, config: EmulatorConfig
    ) -> dict[str, Any]:
        lead_id = params.get("leadid", "").strip()
        if not lead_id:
            raise errors.RequestRejected(errors.MANDATORY_MISSING, "Mandatory parameter leadId is missing")
        body = parse_json_body("application/json", request.body) if request.body.strip() else None
        query = parse_activity_query(body)
        lead = self._store.get(lead_id, now)
        if lead is None:
            raise errors.lead_not_found(config.missing_lead_status)
        return retrieve(lead["activities"], query)
