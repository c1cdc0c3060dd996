// The chat page's service worker: shows our pushes as notifications. A campaign's push
// carries its signed tracking links: `seen` is fetched when the notification is shown
// (the delivery's read), `url` is opened when it is clicked (its click, then the chat).
"use strict";

self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (error) { data = {}; }
  const shown = self.registration.showNotification(data.title || "Your operator", {
    body: data.body || "", tag: data.tag, data: { url: data.url || "/chat/" } });
  const seen = data.seen ? fetch(data.seen, { mode: "no-cors", credentials: "omit" })
    .catch(() => undefined) : Promise.resolve();
  event.waitUntil(Promise.all([shown, seen]));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow(event.notification.data.url || "/chat/"));
});
