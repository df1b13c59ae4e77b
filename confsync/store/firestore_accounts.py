"""Users and their OAuth grants in the Firestore store::

    {prefix}users/{email}                 a person (domain, created_at, status)
    {prefix}grants/{provider}:{email}     one grant: the sealed refresh token, scopes, status, version

Grants are top-level documents (not under their user) so that listing by status needs no
collection-group query, which would cross the ``prefix`` tenants share a database by. A
grant's compare-and-set runs in a transaction that re-reads it. A mixin of
``FirestoreStore``: it owns the client the store uses.
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from confsync.settings import Secret
from confsync.store.firestore_values import data_of, maybe_aware, transact
from confsync.store.keys import doc_id
from confsync.store.records import Grant, GrantStatus, OAuthProvider, User, UserStatus

__all__ = ["FirestoreAccounts"]


class FirestoreAccounts:
    """The users and grants part of ``confsync.ports.Store`` over Firestore."""

    def __init__(self, client: firestore.Client, *, prefix: str = "") -> None:
        self._client = client
        self._users = client.collection(f"{prefix}users")
        self._grants = client.collection(f"{prefix}grants")

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
