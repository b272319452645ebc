// The page the gateway serves at `/`: with the development secret, a sign-in that mints a
// token for any user name (`POST /api/dev/token`); otherwise the embedding site passes a
// token in the URL fragment (`/#token=<JWT>`), never sent to the server in a URL.

import { StrictMode, useEffect, useState, type FormEvent } from "react";
import { createRoot } from "react-dom/client";
import { Chat } from "../react/Chat.js";
import { devToken } from "../sdk/rest.js";
import "../react/chat.css";

interface Session {
  userId: string;
  token: string;
}

function fromFragment(): Session | undefined {
  const p = new URLSearchParams(window.location.hash.slice(1));
  const token = p.get("token");
  if (!token) return undefined;
  try {
    const claims = JSON.parse(atob(token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/"))) as { sub?: string };
    return claims.sub ? { userId: claims.sub, token } : undefined;
  } catch {
    return undefined;
  }
}

function App() {
  const [session, setSession] = useState<Session | undefined>(() => {
    const f = fromFragment();
    if (f) return f;
    const saved = sessionStorage.getItem("parley-session");
    return saved ? (JSON.parse(saved) as Session) : undefined;
  });
  const [devSignIn, setDevSignIn] = useState<boolean | undefined>(undefined);
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  useEffect(() => {
    fetch("/api/dev/token").then(
      (r) => setDevSignIn(r.ok),
      () => setDevSignIn(false),
    );
  }, []);
  useEffect(() => {
    if (session) sessionStorage.setItem("parley-session", JSON.stringify(session));
  }, [session]);

  if (session) {
    const conversation = new URLSearchParams(window.location.search).get("conversation") ?? undefined;
    const props = { userId: session.userId, token: session.token, ...(conversation ? { conversationId: conversation } : {}) };
    const refresh = devSignIn ? { refreshToken: () => devToken("", session.userId) } : {};
    const signOut = () => {
      sessionStorage.removeItem("parley-session");
      window.location.hash = "";
      setSession(undefined);
    };
    return <Chat {...props} {...refresh} onSignOut={signOut} />;
  }
  const signIn = async (e: FormEvent) => {
    e.preventDefault();
    setError("");
    try {
      const userId = name.trim();
      setSession({ userId, token: await devToken("", userId) });
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <main className="parley-signin">
      <h1>Parley</h1>
      {devSignIn === false && <p>Open this page from your marketplace: it passes your sign-in token.</p>}
      {devSignIn && (
        <form onSubmit={signIn}>
          <p>Development sign-in: choose any user name (this gateway runs on its development secret).</p>
          <label>
            User
            <input autoFocus value={name} onChange={(e) => setName(e.target.value)} placeholder="alice" name="user" />
          </label>
          <button type="submit" disabled={!name.trim()}>
            Sign in
          </button>
          {error && <p role="alert">{error}</p>}
        </form>
      )}
    </main>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
