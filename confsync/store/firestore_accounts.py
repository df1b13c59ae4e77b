"""Users, their OAuth grants, connect flows and the commands held for an owner's reconnect in the
Firestore store::

    {prefix}users/{email}                 a person (domain, created_at, status)
    {prefix}grants/{provider}:{email}     one grant: the sealed refresh token, scopes, status, version
    {prefix}connect_flows/{flow}          one connect flow: stage, expires_at, browser, verifier, version
    {prefix}held/{owner}%0A{command}      a command held until its owner reconnects (queried by owner)

Grants and held commands are top-level documents (not under their user) so that listing by
status, or counting every held command, needs no collection-group query, which would cross the
``prefix`` tenants share a database by. A grant's or a flow's compare-and-set runs in a
transaction that re-reads it; starting a flow and holding a command are one ``create``, which
fails if the document exists. A mixin of ``FirestoreStore``: it owns the client the store uses.

Indexes: ``held_commands`` (equality on ``owner``, ordered by ``held_at`` then ``command_id``)
needs the composite index ``HELD_BY_AGE`` in production (``held``: owner ASC, held_at ASC,
command_id ASC; listed in ``firestore.COMPOSITE_INDEXES``); the emulator needs none. Every other
query here is on one field. ``purge_flows`` deletes expired flows on demand; in production a
TTL policy on ``connect_flows.expires_at`` does the same (within a day of expiry, so a flow's
expiry is still checked when it is read).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from confsync.settings import Secret
from confsync.store.firestore_values import BATCH, aware, create, data_of, delete_in_batches, maybe_aware, transact
from confsync.store.keys import doc_id
from confsync.store.records import (
    ConnectFlow,
    FlowStage,
    Grant,
    GrantStatus,
    HeldCommand,
    OAuthProvider,
    User,
    UserStatus,
)

__all__ = ["HELD_BY_AGE", "FirestoreAccounts"]

# held_commands' composite index: the equality field first, then the order fields.
HELD_BY_AGE = ("owner", "held_at", "command_id")


class FirestoreAccounts:
    """The users, grants, connect flows and held commands of ``confsync.ports.Store`` over Firestore."""

    def __init__(self, client: firestore.Client, *, prefix: str = "") -> None:
        self._client = client
        self._users = client.collection(f"{prefix}users")
        self._grants = client.collection(f"{prefix}grants")
        self._flows = client.collection(f"{prefix}connect_flows")
        self._held = client.collection(f"{prefix}held")

    def _grant_ref(self, user: str, provider: OAuthProvider) -> Any:
        return self._grants.document(doc_id(f"{provider.value}:{user}"))

    # -- users ------------------------------------------------------------------------------

    def get_user(self, email: str) -> User | None:
        snapshot = self._users.document(doc_id(email)).get()
        return _user(data_of(snapshot)) if snapshot.exists else None

    def ensure_user(self, user: User) -> User:
        ref = self._users.document(doc_id(user.email))

        def work(transaction: Any) -> User:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists:
                return _user(data_of(snapshot))
            transaction.set(ref, _user_data(user))
            return user

        return transact(self._client, work)

    def forget_user(self, email: str) -> None:
        query = self._grants.where(filter=FieldFilter("user", "==", email))

        def work(transaction: Any) -> None:
            grants = [snapshot.reference for snapshot in transaction.get(query)]
            for ref in grants:  # every read before the first write, as transactions require
                transaction.delete(ref)
            transaction.delete(self._users.document(doc_id(email)))

        transact(self._client, work)

    def list_users(self) -> list[User]:
        return sorted((_user(data_of(snapshot)) for snapshot in self._users.stream()), key=lambda user: user.email)

    # -- grants -----------------------------------------------------------------------------

    def get_grant(self, user: str, provider: OAuthProvider) -> Grant | None:
        snapshot = self._grant_ref(user, provider).get()
        return _grant(data_of(snapshot)) if snapshot.exists else None

    def put_grant(self, grant: Grant, *, expected_version: int) -> bool:
        ref = self._grant_ref(grant.user, grant.provider)

        def work(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            stored = int(data_of(snapshot)["version"]) if snapshot.exists else 0
            if stored != expected_version:
                return False
            transaction.set(ref, _grant_data(grant, version=expected_version + 1))
            return True

        return transact(self._client, work)

    def list_grants(self, *, user: str | None = None, status: GrantStatus | None = None) -> list[Grant]:
        # One equality filter per query (Firestore's automatic indexes); the other is applied here.
        query: Any
        if user is not None:
            query = self._grants.where(filter=FieldFilter("user", "==", user))
        elif status is not None:
            query = self._grants.where(filter=FieldFilter("status", "==", status.value))
        else:
            query = self._grants
        grants = (_grant(data_of(snapshot)) for snapshot in query.stream())
        found = [grant for grant in grants if status is None or grant.status is status]
        return sorted(found, key=lambda grant: (grant.user, grant.provider.value))

    def delete_grant(self, user: str, provider: OAuthProvider) -> bool:
        ref = self._grant_ref(user, provider)

        def work(transaction: Any) -> bool:
            existed = bool(ref.get(transaction=transaction).exists)
            if existed:
                transaction.delete(ref)
            return existed

        return transact(self._client, work)

    # -- connect flows ----------------------------------------------------------------------

    def start_flow(self, flow: ConnectFlow) -> bool:
        return create(self._flows.document(doc_id(flow.flow_id)), _flow_data(flow, version=1))

    def get_flow(self, flow_id: str) -> ConnectFlow | None:
        snapshot = self._flows.document(doc_id(flow_id)).get()
        return _flow(data_of(snapshot)) if snapshot.exists else None

    def put_flow(self, flow: ConnectFlow, *, expected_version: int) -> bool:
        ref = self._flows.document(doc_id(flow.flow_id))

        def work(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists or int(data_of(snapshot)["version"]) != expected_version:
                return False
            transaction.set(ref, _flow_data(flow, version=expected_version + 1))
            return True

        return transact(self._client, work)

    def purge_flows(self, before: datetime) -> int:
        # One range filter on one field: Firestore's automatic index.
        query = self._flows.where(filter=FieldFilter("expires_at", "<", before)).limit(BATCH)
        purged = 0
        while True:
            found = delete_in_batches(self._client, [snapshot.reference for snapshot in query.stream()])
            purged += found
            if found < BATCH:
                return purged

    # -- commands held for an owner's reconnect ---------------------------------------------

    def _held_ref(self, owner: str, command_id: str) -> Any:
        return self._held.document(doc_id(f"{owner}\n{command_id}"))

    def hold_command(self, held: HeldCommand) -> bool:
        return create(self._held_ref(held.owner, held.command_id), _held_data(held))

    def held_commands(self, owner: str, limit: int = 500) -> list[HeldCommand]:
        by, held_at, command_id = HELD_BY_AGE  # a composite index: firestore.COMPOSITE_INDEXES
        query = (
            self._held.where(filter=FieldFilter(by, "==", owner)).order_by(held_at).order_by(command_id).limit(limit)
        )
        return [_held_command(data_of(snapshot)) for snapshot in query.stream()]

    def release_held(self, owner: str, command_ids: list[str]) -> None:
        delete_in_batches(self._client, (self._held_ref(owner, command_id) for command_id in command_ids))

    def count_held(self, owner: str | None = None) -> int:
        query: Any = self._held if owner is None else self._held.where(filter=FieldFilter("owner", "==", owner))
        ((result,),) = query.count().get()  # one aggregation, one result
        return int(result.value)


def _user_data(user: User) -> dict[str, Any]:
    return {"email": user.email, "domain": user.domain, "created_at": user.created_at, "status": user.status.value}


def _user(data: dict[str, Any]) -> User:
    return User(
        email=data["email"],
        domain=data.get("domain"),
        created_at=maybe_aware(data.get("created_at")),
        status=UserStatus(data.get("status", UserStatus.ACTIVE.value)),
    )


def _grant_data(grant: Grant, *, version: int) -> dict[str, Any]:
    return {
        "user": grant.user,
        "provider": grant.provider.value,
        "sealed_token": grant.sealed_token.reveal(),
        "scopes": list(grant.scopes),
        "status": grant.status.value,
        "version": version,
        "updated_at": grant.updated_at,
        "account_id": grant.account_id,
        "account_email": grant.account_email,
    }


def _grant(data: dict[str, Any]) -> Grant:
    return Grant(
        user=data["user"],
        provider=OAuthProvider(data["provider"]),
        sealed_token=Secret(data["sealed_token"]),
        scopes=tuple(data.get("scopes") or ()),
        status=GrantStatus(data["status"]),
        version=int(data["version"]),
        updated_at=maybe_aware(data.get("updated_at")),
        account_id=data.get("account_id"),
        account_email=data.get("account_email"),
    )


def _flow_data(flow: ConnectFlow, *, version: int) -> dict[str, Any]:
    return {
        "flow_id": flow.flow_id,
        "user": flow.user,
        "stage": flow.stage.value,
        "expires_at": flow.expires_at,
        "browser": flow.browser,
        "verifier": None if flow.verifier is None else flow.verifier.reveal(),
        "version": version,
    }


def _flow(data: dict[str, Any]) -> ConnectFlow:
    verifier = data.get("verifier")
    return ConnectFlow(
        flow_id=data["flow_id"],
        user=data["user"],
        stage=FlowStage(data["stage"]),
        expires_at=aware(data["expires_at"]),
        browser=data["browser"],
        verifier=None if verifier is None else Secret(verifier),
        version=int(data["version"]),
    )


def _held_data(held: HeldCommand) -> dict[str, Any]:
    return {
        "owner": held.owner,
        "command_id": held.command_id,
        "conference_id": held.conference_id,
        "data": held.data,
        "held_at": held.held_at,
        "cause": held.cause,
    }


def _held_command(data: dict[str, Any]) -> HeldCommand:
    return HeldCommand(
        owner=data["owner"],
        command_id=data["command_id"],
        conference_id=data["conference_id"],
        data=bytes(data["data"]),
        held_at=aware(data["held_at"]),
        cause=data["cause"],
    )
