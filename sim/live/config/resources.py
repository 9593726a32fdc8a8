"""EventBridge resources in their AWS shapes (design §5): the typed, frozen models of a core config.

`Connection`, `ApiDestination` and `Rule` (with its `Targets`) use the property names of the
EventBridge API / CloudFormation, so a definition can be pasted in; `SimSettings` holds the
settings AWS does not document (the ASSUMPTION knobs of design §3), defaulting to the same
values as `sim.scenario.model`. Credentials are `SecretStr`s and never print. `CoreConfig` ties
them together; build one with `sim.live.config.loading.load_config` / `build_config`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from sim.live.eventbridge import patterns
from sim.live.eventbridge.checks import (
    check_header_name,
    check_header_value,
    check_method,
    reference_name,
)
from sim.live.eventbridge.transform import InputSpec, InvalidInputConfig
from sim.scenario.model import (
    MAX_EVENT_AGE_S,
    MAX_RETRY_ATTEMPTS,
    MIN_EVENT_AGE_S,
    NAME_PATTERN,
    Account,
    Backoff,
    Destination,
    PositiveDuration,
    RetryPolicy,
)

ResourceName = Annotated[str, Field(pattern=NAME_PATTERN)]
SECRET_KEYS = ("Password", "ApiKeyValue", "ClientSecret", "secret_access_key")
"""Config keys whose values are credentials."""
_ACCESS_KEY_ID = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_TARGET_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_DESTINATION = Destination()


class Aws(BaseModel):
    """Base for every config section: unknown keys are errors, numbers are finite, instances
    are immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, allow_inf_nan=False
    )


# --- connections ------------------------------------------------------------------------------


class Parameter(Aws):
    """One `Key`/`Value` of a connection's HTTP parameters; values are secret unless marked not."""

    Key: Annotated[str, Field(min_length=1, max_length=512)]
    Value: SecretStr
    IsValueSecret: bool = True


class ConnectionHttpParameters(Aws):
    """Headers, query-string and body parameters a connection adds to every request it makes."""

    HeaderParameters: list[Parameter] = Field(default_factory=list)
    QueryStringParameters: list[Parameter] = Field(default_factory=list)
    BodyParameters: list[Parameter] = Field(default_factory=list)

    @field_validator("HeaderParameters")
    @classmethod
    def _headers(cls, params: list[Parameter]) -> list[Parameter]:
        for param in params:
            check_header_name(param.Key)
            check_header_value(param.Value.get_secret_value())
        return params


def _sendable(value: SecretStr) -> SecretStr:
    """A credential that goes into a header: no CR, LF or other control character (as AWS's
    own patterns for these parameters); the message never holds the value."""
    check_header_value(value.get_secret_value())
    return value


def _user_id(value: str) -> str:
    """The user part of HTTP Basic credentials: sendable, and without the colon that ends it."""
    check_header_value(value)
    if ":" in value:
        raise ValueError("must not contain ':' (it separates the user from the password)")
    return value


class BasicAuth(Aws):
    Username: Annotated[str, Field(min_length=1)]
    Password: SecretStr

    _username = field_validator("Username")(_user_id)
    _password = field_validator("Password")(_sendable)


class ApiKeyAuth(Aws):
    ApiKeyName: Annotated[str, Field(min_length=1)]
    ApiKeyValue: SecretStr

    @field_validator("ApiKeyName")
    @classmethod
    def _name(cls, value: str) -> str:
        check_header_name(value)
        return value

    _value = field_validator("ApiKeyValue")(_sendable)


class ClientCredentials(Aws):
    ClientID: Annotated[str, Field(min_length=1, max_length=512)]
    ClientSecret: SecretStr

    _client_id = field_validator("ClientID")(_user_id)
    _client_secret = field_validator("ClientSecret")(_sendable)


class OAuthSettings(Aws):
    AuthorizationEndpoint: Annotated[str, Field(min_length=1, max_length=2048)]
    HttpMethod: Literal["GET", "POST", "PUT"]
    ClientParameters: ClientCredentials
    OAuthHttpParameters: ConnectionHttpParameters = Field(default_factory=ConnectionHttpParameters)


class AuthParameters(Aws):
    BasicAuthParameters: BasicAuth | None = None
    ApiKeyAuthParameters: ApiKeyAuth | None = None
    OAuthParameters: OAuthSettings | None = None
    InvocationHttpParameters: ConnectionHttpParameters = Field(
        default_factory=ConnectionHttpParameters
    )


AUTH_KEYS = {
    "BASIC": "BasicAuthParameters",
    "API_KEY": "ApiKeyAuthParameters",
    "OAUTH_CLIENT_CREDENTIALS": "OAuthParameters",
}


class Connection(Aws):
    """`AWS::Events::Connection`: how requests are authorized (S11)."""

    Name: ResourceName
    Description: str | None = None
    AuthorizationType: Literal["BASIC", "API_KEY", "OAUTH_CLIENT_CREDENTIALS"]
    AuthParameters: AuthParameters

    @model_validator(mode="after")
    def _one_auth(self) -> Connection:
        wanted = AUTH_KEYS[self.AuthorizationType]
        if getattr(self.AuthParameters, wanted) is None:
            raise ValueError(
                f"AuthorizationType {self.AuthorizationType} needs AuthParameters.{wanted}"
            )
        for key in AUTH_KEYS.values():
            if key != wanted and getattr(self.AuthParameters, key) is not None:
                raise ValueError(f"AuthParameters.{key} does not go with {self.AuthorizationType}")
        return self


# --- API destinations --------------------------------------------------------------------------


class ApiDestination(Aws):
    """`AWS::Events::ApiDestination`: endpoint, method and invocation rate limit (S2, S15).

    `InvocationRateLimitPerSecond: null` means unlimited (a sim extension, as in scenarios).
    """

    Name: ResourceName
    Description: str | None = None
    ConnectionArn: Annotated[str, Field(min_length=1)]
    InvocationEndpoint: Annotated[str, Field(min_length=1, max_length=2048)]
    HttpMethod: str
    InvocationRateLimitPerSecond: Annotated[float, Field(gt=0)] | None = 300.0

    @field_validator("HttpMethod")
    @classmethod
    def _method(cls, value: str) -> str:
        return check_method(value)


# --- rules and targets -------------------------------------------------------------------------


class TargetHttpParameters(Aws):
    """A target's HttpParameters (S12); values may be JSON paths into the event (`$.detail.x`)."""

    PathParameterValues: list[str] = Field(default_factory=list)
    HeaderParameters: dict[str, str] = Field(default_factory=dict)
    QueryStringParameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("HeaderParameters")
    @classmethod
    def _headers(cls, params: dict[str, str]) -> dict[str, str]:
        for name, value in params.items():
            check_header_name(name)
            check_header_value(value)
        return params


class InputTransformerSettings(Aws):
    InputPathsMap: dict[str, str] = Field(default_factory=dict)
    InputTemplate: str


class TargetRetryPolicy(Aws):
    """A target's RetryPolicy (S6)."""

    MaximumEventAgeInSeconds: Annotated[float, Field(ge=MIN_EVENT_AGE_S, le=MAX_EVENT_AGE_S)] = (
        _DEFAULT_RETRY.maximum_event_age
    )
    MaximumRetryAttempts: Annotated[int, Field(ge=0, le=MAX_RETRY_ATTEMPTS)] = (
        _DEFAULT_RETRY.maximum_retry_attempts
    )


class DeadLetter(Aws):
    Arn: Annotated[str, Field(min_length=1)]


class Target(Aws):
    """One target of a rule: an API destination with its input, parameters and retry policy."""

    Id: str
    Arn: Annotated[str, Field(min_length=1)]
    RoleArn: str | None = None
    HttpParameters: TargetHttpParameters = Field(default_factory=TargetHttpParameters)
    Input: str | None = None
    InputPath: str | None = None
    InputTransformer: InputTransformerSettings | None = None
    RetryPolicy: TargetRetryPolicy = Field(default_factory=TargetRetryPolicy)
    DeadLetterConfig: DeadLetter | None = None
    _input: InputSpec = PrivateAttr()

    @field_validator("Id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _TARGET_ID.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _input_spec(self) -> Target:
        try:
            self._input = InputSpec.from_target(self.model_dump(exclude_none=True))
        except InvalidInputConfig as err:
            raise ValueError(str(err)) from None
        return self

    @property
    def input_spec(self) -> InputSpec:
        """The validated Input / InputPath / InputTransformer setting (S13)."""
        return self._input


class Rule(Aws):
    """`AWS::Events::Rule` with its targets (S14)."""

    Name: ResourceName
    EventBusName: ResourceName = "default"
    Description: str | None = None
    State: Literal["ENABLED", "DISABLED"] = "ENABLED"
    EventPattern: dict[str, Any] | str
    Targets: Annotated[list[Target], Field(min_length=1, max_length=5)]
    _pattern: patterns.EventPattern = PrivateAttr()

    @field_validator("EventPattern")
    @classmethod
    def _valid_pattern(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        try:
            patterns.compile_pattern(value)
        except patterns.InvalidEventPattern as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _compile(self) -> Rule:
        self._pattern = patterns.compile_pattern(self.EventPattern)
        ids = [t.Id for t in self.Targets]
        if len(set(ids)) != len(ids):
            raise ValueError("target Ids must be unique within a rule")
        return self

    @property
    def pattern(self) -> patterns.EventPattern:
        """The compiled event pattern."""
        return self._pattern


# --- the sim section and the whole config ------------------------------------------------------


class IngestCredential(Aws):
    """An access key the PutEvents endpoint accepts (SigV4, service `events`, `sim.region`)."""

    access_key_id: str
    secret_access_key: SecretStr

    @field_validator("access_key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if not _ACCESS_KEY_ID.match(value):
            raise ValueError("must be 1-128 characters of letters, digits or '_'")
        return value

    @field_validator("secret_access_key")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return _sendable(value)


class SimSettings(Aws):
    """Settings AWS does not document (ASSUMPTION, design §3); defaults as in `sim.scenario.model`.

    `ingest_credentials` are the access keys PutEvents requests must be signed with (SigV4);
    without any, the endpoint checks no signature and may listen on loopback only.
    `account_invocation_limit_per_second` is the account's invocation quota (one token bucket
    every attempt of every target takes; over it attempts wait, never fail), with
    `account_burst_capacity` and `account_order` as in a bus scenario's `account` block
    (docs/bus.md B4, B5); null (the default) = no quota.
    """

    burst_capacity: Annotated[float, Field(ge=1)] | None = None
    timeout: PositiveDuration = _DEFAULT_DESTINATION.timeout
    backoff: Backoff = Field(default_factory=Backoff)
    retry_statuses: list[int | str] = Field(
        default_factory=lambda: list(_DEFAULT_RETRY.retry_statuses)
    )
    throttle_order: Literal["fifo", "lifo"] = _DEFAULT_DESTINATION.throttle_order
    allow_private_endpoints: bool = False
    region: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] = "us-east-1"
    account: Annotated[str, Field(pattern=r"^\d{12}$")] = "123456789012"
    seed: Annotated[int, Field(ge=0)] | None = None
    ingest_credentials: list[IngestCredential] = Field(default_factory=list)
    account_invocation_limit_per_second: Annotated[float, Field(gt=0)] | None = None
    account_burst_capacity: Annotated[float, Field(ge=1)] | None = None
    account_order: Literal["after_destination", "before_destination"] = "after_destination"

    @property
    def account_quota(self) -> Account:
        """The account quota as a scenario's `account` block (its `burst` fills the default)."""
        return Account(
            invocation_limit_per_second=self.account_invocation_limit_per_second,
            burst_capacity=self.account_burst_capacity,
            order=self.account_order,
        )

    @field_validator("ingest_credentials")
    @classmethod
    def _unique_keys(cls, value: list[IngestCredential]) -> list[IngestCredential]:
        keys = [credential.access_key_id for credential in value]
        if len(set(keys)) != len(keys):
            raise ValueError("each access_key_id may be given once")
        return value

    def ingest_secrets(self) -> dict[str, str]:
        """Access key id -> secret access key of every PutEvents credential."""
        return {
            c.access_key_id: c.secret_access_key.get_secret_value() for c in self.ingest_credentials
        }

    @field_validator("retry_statuses")
    @classmethod
    def _statuses(cls, value: list[int | str]) -> list[int | str]:
        try:
            return RetryPolicy(retry_statuses=value).retry_statuses  # the scenario's own checks
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            raise ValueError(str(first["msg"]).removeprefix("Value error, ")) from None


class CoreConfig(Aws):
    """A whole live-core configuration; build it with `load_config` or `build_config`."""

    Connections: list[Connection] = Field(default_factory=list)
    ApiDestinations: list[ApiDestination] = Field(default_factory=list)
    Rules: list[Rule] = Field(default_factory=list)
    sim: SimSettings = Field(default_factory=SimSettings)
    _secrets: frozenset[str] = PrivateAttr(default=frozenset())

    @cached_property
    def connections(self) -> dict[str, Connection]:
        return {c.Name: c for c in self.Connections}

    @cached_property
    def destinations(self) -> dict[str, ApiDestination]:
        return {d.Name: d for d in self.ApiDestinations}

    def connection_of(self, destination: ApiDestination) -> Connection:
        """The connection an API destination authorizes through."""
        return self.connections[reference_name(destination.ConnectionArn, "connection")]

    def destination_of(self, target: Target) -> ApiDestination:
        """The API destination a target invokes."""
        return self.destinations[reference_name(target.Arn, "api-destination")]

    def retry_policy(self, target: Target) -> RetryPolicy:
        """The policy-module RetryPolicy for a target: its limits plus the sim backoff/statuses."""
        return RetryPolicy(
            maximum_event_age=target.RetryPolicy.MaximumEventAgeInSeconds,
            maximum_retry_attempts=target.RetryPolicy.MaximumRetryAttempts,
            backoff=self.sim.backoff,
            retry_statuses=self.sim.retry_statuses,
        )

    def burst(self, destination: ApiDestination) -> float:
        """Token-bucket capacity of a destination: `sim.burst_capacity`, else one second of rate."""
        return Destination(
            invocation_rate_limit_per_second=destination.InvocationRateLimitPerSecond,
            burst_capacity=self.sim.burst_capacity,
        ).burst

    def arn(self, kind: str, name: str) -> str:
        """An ARN in the configured region/account (`rule/bus/name`, `api-destination/name`)."""
        return f"arn:aws:events:{self.sim.region}:{self.sim.account}:{kind}/{name}"

    def rule_arn(self, rule: Rule) -> str:
        path = rule.Name if rule.EventBusName == "default" else f"{rule.EventBusName}/{rule.Name}"
        return self.arn("rule", path)

    def target_arn(self, target: Target) -> str:
        return self.api_destination_arn(self.destination_of(target))

    def api_destination_arn(self, destination: ApiDestination) -> str:
        """The destination's ARN as AWS writes it: `...:api-destination/NAME/UUID`, the UUID
        derived from the name, region and account (UUID 5), so it is the same in every run."""
        arn = self.arn("api-destination", destination.Name)
        return f"{arn}/{uuid.uuid5(uuid.NAMESPACE_URL, arn)}"

    @property
    def secrets(self) -> frozenset[str]:
        """Every secret value in this config (credentials, secret parameters, `${env:}` values)."""
        return self._secrets

    def redact(self, text: str) -> str:
        """`text` with every secret value replaced by `***`."""
        return redact(text, self._secrets)

    def __repr__(self) -> str:  # `${env:}` values may sit in plain fields too
        return self.redact(super().__repr__())

    def __str__(self) -> str:
        return self.redact(super().__str__())


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `***` (longest first, so overlaps go whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
