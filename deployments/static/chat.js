// The customer chat: a session kept in localStorage, live over the WebSocket; options as
// buttons, counter-offers as cards, a banner while the connection is down.
"use strict";

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
let session = JSON.parse(store.getItem("comms-chat") || "null");
let socket = null;
let cursor = 0;
let retry = 0;
let wasDown = false;

function save() { store.setItem("comms-chat", JSON.stringify(session)); }

async function newSession() {
  const response = await fetch("/chat/api/sessions", { method: "POST",
    headers: { "Content-Type": "application/json" }, body: "{}" });
  const data = await response.json();
  session = { id: data.session_id, token: data.token };
  save();
}

function scrollDown() { const box = $("messages"); box.scrollTop = box.scrollHeight; }

function send(text) {
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify({ text }));
  return true;
}

function render(message) {
  if (message.seq <= cursor) return;
  cursor = message.seq;
  const box = $("messages");
  for (const old of box.querySelectorAll(".options")) old.remove();
  if (message.kind === "offer") {
    const card = document.createElement("div");
    card.className = "offer-card";
    card.dataset.seq = message.seq;
    card.dataset.offer = message.offer ? message.offer.id : "";
    const title = document.createElement("h3");
    title.textContent = "A special offer for you";
    const text = document.createElement("p");
    text.textContent = message.text;
    const accept = document.createElement("button");
    accept.textContent = "Accept";
    accept.className = "accept-offer";
    accept.addEventListener("click", () => { if (send("Accept")) accept.disabled = true; });
    card.append(title, text, accept);
    box.appendChild(card);
  } else {
    const bubble = document.createElement("div");
    bubble.className = `bubble ${message.role === "customer" ? "customer" : "bot"}`;
    bubble.textContent = message.text;
    bubble.dataset.node = message.node || "";
    bubble.dataset.seq = message.seq;
    box.appendChild(bubble);
    if (message.options && message.options.length) {
      const options = document.createElement("div");
      options.className = "options";
      options.dataset.seq = message.seq;
      message.options.forEach((label, i) => {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = `${i + 1}. ${label}`;
        button.addEventListener("click", () => send(label));
        options.appendChild(button);
      });
      box.appendChild(options);
    }
  }
  scrollDown();
}

function banner(text, kind) {
  const node = $("banner");
  node.textContent = text;
  node.className = `banner ${kind}`;
  if (kind === "up") setTimeout(() => node.classList.add("hidden"), 2500);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The token goes in the first frame, never in the URL (logs and proxies keep URLs).
  socket = new WebSocket(`${scheme}://${location.host}/chat/ws/${session.id}`);
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ token: session.token, after: cursor }));
    retry = 0;
    if (wasDown) banner("Connected again.", "up");
    wasDown = false;
  });
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "message") render(frame.message);
    else if (frame.type === "error") banner(frame.message, "down");
  });
  socket.addEventListener("close", async (event) => {
    if (event.code === 4401) {  // the session is gone: start a new one
      await newSession();
      cursor = 0;
      $("messages").replaceChildren();
      connect();
      return;
    }
    wasDown = true;
    banner("Connection lost. Reconnecting…", "down");
    retry = Math.min(retry + 1, 5);
    setTimeout(connect, 500 * retry);
  });
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (send(text)) $("text").value = "";
});

$("clear").addEventListener("click", async () => {
  const response = await fetch(`/chat/api/sessions/${session.id}/messages`, {
    method: "DELETE", headers: { Authorization: `Bearer ${session.token}`,
                                 "x-session-id": session.id } });
  if (!response.ok) return;
  const data = await response.json();
  // The socket may have delivered the new greeting (or even a later turn) before this
  // answer: drop only what came before the greeting, then add what is not shown yet.
  const first = data.messages.length ? data.messages[0].seq : cursor + 1;
  for (const node of [...$("messages").children]) {
    if (Number(node.dataset.seq || 0) < first) node.remove();
  }
  data.messages.forEach(render);
});

// Notifications (web push): offered where the browser has push; kept for a verified
// customer only (the server says 409 otherwise).
function urlBytes(text) {
  const b64 = (text + "=".repeat((4 - text.length % 4) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function subscribeToPush() {
  const registration = await navigator.serviceWorker.register("/chat/push-sw.js",
                                                              { scope: "/chat/" });
  if (await Notification.requestPermission() !== "granted") {
    banner("Notifications are blocked for this site.", "down");
    return;
  }
  const key = (await (await fetch("/chat/api/push/key")).json()).public_key;
  let subscription;
  try {
    subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: urlBytes(key) });
  } catch (error) {
    banner(`Notifications are not available in this browser (${error.message}).`, "down");
    return;
  }
  const response = await fetch(`/chat/api/sessions/${session.id}/push-subscription`, {
    method: "POST", body: JSON.stringify(subscription.toJSON()),
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${session.token}`,
               "x-session-id": session.id } });
  if (response.status === 409) banner("Tell us who you are in the chat first.", "down");
  else if (response.ok) banner("Notifications are on.", "up");
  else banner("Notifications could not be turned on.", "down");
}

if ("serviceWorker" in navigator && "PushManager" in window) {
  $("notify").hidden = false;
  $("notify").addEventListener("click", () => subscribeToPush().catch(
    (error) => banner(`Notifications could not be turned on (${error.message}).`, "down")));
}

(async () => {
  if (!session) await newSession();
  connect();
})();
