"""Who is asking: the authenticated user as Kubernetes' ``user.Info`` describes it."""

from __future__ import annotations

from dataclasses import dataclass, field

ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    uid: str = ""
    # How the identity was established: requestheader, x509, token or anonymous.
    method: str = ""

    def with_authenticated_group(self) -> UserInfo:
        """Add ``system:authenticated`` as k8s' AuthenticatedGroupAdder does (not for anonymous)."""
        if self.name == ANONYMOUS or AUTHENTICATED in self.groups or UNAUTHENTICATED in self.groups:
            return self
        return UserInfo(self.name, (*self.groups, AUTHENTICATED), self.extra, self.uid, self.method)


ANONYMOUS_USER = UserInfo(ANONYMOUS, (UNAUTHENTICATED,), method="anonymous")
