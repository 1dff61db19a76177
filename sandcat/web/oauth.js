// GitHub login on the built-in page (docs/protocol.md, "GitHub login"): the "Sign in with
// GitHub" link, shown when the server offers it, starts a browser sign-in
// (/user/auth/github?web=true&nonce=...); the server's callback comes back to this page
// with the login answer, or the error, in the URL fragment, which is read and removed at
// once. The answer is taken only with the nonce this tab gave at the start: a link to the
// page carrying someone else's login answer (login CSRF) signs nothing in.

const ERRORS = {
  OAuthState: "That GitHub sign-in expired, was already used or began in another browser. Please try again.",
  OAuthRefused: "GitHub refused the sign-in. Please try again.",
  OAuthProvider: "GitHub could not be reached. Please try again later.",
};
const NOT_BEGUN_HERE = "That GitHub sign-in was not begun on this page. Please sign in again.";
/** The nonce of the sign-in this tab began (sessionStorage: it survives the trip to GitHub). */
const NONCE_KEY = "sandcat-github-nonce";

function newNonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Show `link` when the server offers GitHub login (GET /user/auth/providers). */
export async function offerGithub(link) {
  try {
    const response = await fetch("/user/auth/providers");
    const body = await response.json();
    link.hidden = !(response.ok && body.providers.includes("github"));
  } catch {
    link.hidden = true;
  }
  link.addEventListener("click", (event) => {
    event.preventDefault();
    const nonce = newNonce();
    sessionStorage.setItem(NONCE_KEY, nonce);
    window.location.assign(`/user/auth/github?web=true&nonce=${nonce}`);
  });
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
  const expected = sessionStorage.getItem(NONCE_KEY);
  sessionStorage.removeItem(NONCE_KEY);
  // `#oauth=<URL-encoded JSON>&nonce=<nonce>`: the encoded JSON holds no bare `&`.
  const [encoded, ...params] = hash.slice(key.length + 1).split("&");
  let value;
  try {
    value = JSON.parse(decodeURIComponent(encoded));
  } catch {
    return { error: "The GitHub sign-in came back unreadable. Please try again." };
  }
  if (key === "oauth_error") return { error: ERRORS[value.kind] || value.details || value.kind };
  const nonce = new URLSearchParams(params.join("&")).get("nonce");
  if (!expected || nonce !== expected) return { error: NOT_BEGUN_HERE };
  return {
    session: {
      user: value.user,
      wsAddr: value.ws_addr,
      token: value.token,
      refreshToken: value.refresh_token,
    },
  };
}
