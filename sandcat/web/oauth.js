// GitHub login on the built-in page (docs/protocol.md, "GitHub login"): the "Sign in with
// GitHub" link, shown when the server offers it, starts a browser sign-in
// (/user/auth/github?web=true); the server's callback comes back to this page with the
// login answer, or the error, in the URL fragment, which is read and removed at once.

const ERRORS = {
  OAuthState: "That GitHub sign-in expired, was already used or began in another browser. Please try again.",
  OAuthRefused: "GitHub refused the sign-in. Please try again.",
  OAuthProvider: "GitHub could not be reached. Please try again later.",
};

/** Show `link` when the server offers GitHub login (GET /user/auth/providers). */
export async function offerGithub(link) {
  try {
    const response = await fetch("/user/auth/providers");
    const body = await response.json();
    link.hidden = !(response.ok && body.providers.includes("github"));
  } catch {
    link.hidden = true;
  }
}

/**
 * What a GitHub sign-in left in the URL fragment, removed from the address bar (and so from
 * the history): `{session}` for the page's sessionStorage, `{error}` as a sentence, or null.
 */
export function takeGithubLanding() {
  const hash = window.location.hash.slice(1);
  const key = ["oauth", "oauth_error"].find((name) => hash.startsWith(`${name}=`));
  if (!key) return null;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  let value;
  try {
    value = JSON.parse(decodeURIComponent(hash.slice(key.length + 1)));
  } catch {
    return { error: "The GitHub sign-in came back unreadable. Please try again." };
  }
  if (key === "oauth_error") return { error: ERRORS[value.kind] || value.details || value.kind };
  return {
    session: {
      user: value.user,
      wsAddr: value.ws_addr,
      token: value.token,
      refreshToken: value.refresh_token,
    },
  };
}
