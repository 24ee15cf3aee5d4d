// The demo's live figures: /api/info every second, the clock from /events/clock.
"use strict";

const $ = (id) => document.getElementById(id);

function duration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
}

function setStatus(state) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = state;
}

// The states in the order a connection goes through them, named as the live
// view (/_reactor/) and reactor.connection.State name them: /api/info counts
// them by enum name ("READING_HEADERS"), shown as the enum value ("reading headers").
const STATES = ["IDLE", "READING_HEADERS", "READING_BODY", "WRITING", "STREAMING", "PUSHING", "UPGRADED", "CLOSING", "IN_POOL"];

function stateLabel(name) {
  return name.toLowerCase().replaceAll("_", " ");
}

function showStates(connections) {
  const list = $("states");
  list.replaceChildren();
  const counts = connections || {};
  const names = Object.keys(counts);
  if (!names.length) {
    const item = document.createElement("li");
    item.textContent = "none";
    list.append(item);
  }
  const order = (name) => (STATES.includes(name) ? STATES.indexOf(name) : STATES.length);
  for (const name of names.sort((a, b) => order(a) - order(b) || a.localeCompare(b))) {
    const item = document.createElement("li");
    item.textContent = stateLabel(name) + ": " + counts[name];
    list.append(item);
  }
}

async function refresh() {
  try {
    const response = await fetch("/api/info", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const info = await response.json();
    $("version").textContent = info.version;
    $("python").textContent = info.python;
    $("footer-python").textContent = "Python " + info.python;
    $("uptime").textContent = duration(info.uptime_s);
    $("accepted").textContent = String(info.accepted ?? "–");
    $("iterations").textContent = String(info.loop_iterations ?? "–");
    $("timers").textContent = String(info.timers ?? "–");
    showStates(info.connections);
    setStatus("live");
  } catch (error) {
    setStatus("offline");
  }
}

function subscribeToClock() {
  if (!("EventSource" in window)) return;
  const clock = new EventSource("/events/clock");
  clock.addEventListener("time", (event) => {
    $("clock").textContent = event.data;
  });
}

refresh();
setInterval(refresh, 1000);
subscribeToClock();
