"use strict";
// The demo's chat over a WebSocket (/ws/chat: messages both ways) or, with
// ?transport=sse, over Server-Sent Events (/events/chat) and POST /chat.
// Both join the same Broadcast on the server.
const $ = (id) => document.getElementById(id);
const transport = new URLSearchParams(location.search).get("transport") === "sse" ? "sse" : "websocket";

function setStatus(state) {
  $("status").textContent = state;
  $("status").dataset.state = state === "connected" ? "live" : "offline";
}

function show(text) {
  const item = document.createElement("li");
  item.textContent = text;
  $("log").append(item);
}

let send;
if (transport === "websocket") {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/chat";
  let socket = null;
  const connect = () => {
    socket = new WebSocket(url);
    socket.addEventListener("open", () => setStatus("connected"));
    socket.addEventListener("message", (event) => show(event.data));
    socket.addEventListener("close", () => {
      setStatus("reconnecting");
      setTimeout(connect, 1000);
    });
  };
  connect();
  send = (text) => socket.send(text);
} else {
  const events = new EventSource("/events/chat");
  events.addEventListener("open", () => setStatus("connected"));
  events.addEventListener("message", (event) => show(event.data));
  events.addEventListener("error", () => setStatus("reconnecting"));
  send = (text) => fetch("/chat", {method: "POST", body: text});
}
$("transport").textContent = transport === "sse" ? "Server-Sent Events" : "a WebSocket";

$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (text) {
    send(text);
    $("text").value = "";
  }
});
