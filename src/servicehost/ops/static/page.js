// The status page's script: served from the service itself (CSP script-src 'self'); nothing inline.
// It polls "status" (relative, so the page works behind a path prefix) and shows the answer. Every
// value from the service is set as text (textContent, setAttribute), never parsed as markup.
"use strict";
(function () {
  const EVERY = 2000;          // ms between two polls while the tab is visible
  const HIDDEN_EVERY = 60000;  // ... while it is hidden: a background tab costs the service little
  const RETRY_MAX = 30000;     // the longest pause between two tries while the service does not answer
  const TIMEOUT = 5000;        // ms one poll may take before it counts as no answer
  const STATES = {
    created: "created: not started yet",
    starting: "starting: not ready yet",
    running: "running: takes new work",
    draining: "draining: intake held, finishing accepted work",
    pausing: "pausing: finishing running tasks",
    paused: "paused: workers take no tasks",
    resuming: "resuming",
    stopping: "stopping: finishing work before exit",
    stopped: "stopped",
    failed: "failed",
  };
  let timer = null;
  let failures = 0;
  let staleSince = null;
  let lastAnswer = null;
  let inFlight = null;

  const $ = (id) => document.getElementById(id);
  const show = (value) => (value === null || value === undefined || value === "" ? "-" : String(value));
  const setText = (id, value) => { $(id).textContent = show(value); };
  const clock = (date) => date.toLocaleTimeString([], { hour12: false });
  const when = (seconds) => (typeof seconds === "number" ? clock(new Date(seconds * 1000)) : "-");

  function duration(seconds) {
    if (typeof seconds !== "number") return "-";
    let s = Math.floor(seconds);
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= size) { parts.push(Math.floor(s / size) + unit); s %= size; }
    }
    parts.push(s + "s");
    return parts.slice(0, 2).join(" ");
  }

  function ms(seconds) {
    if (typeof seconds !== "number") return "-";
    return seconds < 1 ? (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 0) + " ms" : seconds.toFixed(2) + " s";
  }

  function ratio(used, size) {
    return size === null || size === undefined ? show(used) : show(used) + " / " + show(size);
  }

  function cell(row, label, value, numeric) {
    const td = document.createElement("td");
    td.setAttribute("data-label", label);
    td.textContent = show(value);
    if (numeric) td.className = "num";
    row.appendChild(td);
    return td;
  }

  function placeholder(body, columns, message) {
    const row = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = columns;
    td.className = "muted";
    td.textContent = message;
    row.appendChild(td);
    body.replaceChildren(row);
  }

  function setState(state) {
    const el = $("state");
    el.textContent = STATES[state] || show(state);
    el.className = "state state-" + (Object.hasOwn(STATES, state) ? state : "unknown");
  }

  function yesNo(id, value, good) {
    const el = $(id);
    el.textContent = value === true ? "yes" : value === false ? "no" : "unknown";
    el.className = value === good ? "good" : value === null || value === undefined ? "" : "bad";
  }

  function render(doc) {
    lastAnswer = doc;
    setText("name", doc.name);
    document.title = show(doc.name) + " \u2013 " + show(doc.state);
    setState(doc.state);
    $("since").textContent = typeof doc.state_since === "number" ? "since " + when(doc.state_since) : "";
    yesNo("accepting", doc.accepting, true);
    yesNo("healthy", doc.healthy, true);
    setText("pid", doc.pid);
    setText("version", doc.version);
    setText("uptime", duration(doc.uptime));
    setText("servicehost-version", doc.servicehost);
    setText("python", doc.python);

    const rows = $("component-rows");
    const counters = Array.isArray(doc.counters) ? doc.counters : [];
    if (!counters.length) placeholder(rows, 7, "no components");
    else {
      rows.replaceChildren(...counters.map((c) => {
        const row = document.createElement("tr");
        const name = cell(row, "Name", c.name);
        name.className = "component-name";
        cell(row, "Kind", c.kind);
        cell(row, "Busy", ratio(c.in_flight, c.workers), true);
        cell(row, "Queued", ratio(c.queue_depth, c.queue_capacity), true);
        cell(row, "Done", c.completed, true).classList.add("done");
        const failed = cell(row, "Failed", c.failed, true);
        if (c.failed) failed.classList.add("bad");
        cell(row, "Run time", [c.latency_p50, c.latency_p95, c.latency_p99].map(ms).join(" / "), true);
        return row;
      }));
    }

    const checks = Array.isArray(doc.checks) ? doc.checks : [];
    const checkRows = $("check-rows");
    if (!checks.length) placeholder(checkRows, 4, "none declared");
    else {
      checkRows.replaceChildren(...checks.map((c) => {
        const row = document.createElement("tr");
        cell(row, "Check", c.name);
        const result = cell(row, "Result", c.health || "pending");
        result.className = c.health === "healthy" ? "good" : c.health === "degraded" ? "poor" : c.health ? "bad" : "muted";
        const tags = Array.isArray(c.tags) ? c.tags : [];
        cell(row, "For", tags.map((t) => (t === "ready" ? "readiness" : t === "live" ? "liveness" : t)).join(", "));
        cell(row, "Detail", c.detail + (typeof c.at === "number" ? " (" + when(c.at) + ")" : ""));
        return row;
      }));
    }

    const error = doc.last_error;
    $("last-error").textContent = error ? show(error.component) + ": " + show(error.error) + " (at " + when(error.at) + ")" : "none";
  }

  function markStale(reason) {
    if (staleSince === null) staleSince = new Date();
    const banner = $("banner");
    banner.textContent = "Stale since " + clock(staleSince) + ": the service does not answer (" + reason + "). " +
      (lastAnswer ? "The figures below are its last answer; its state is unknown." : "Nothing has been received from it yet.");
    banner.hidden = false;
    setState("unknown");
    $("state").textContent = "unknown: no answer";
    $("since").textContent = "";
    yesNo("accepting", null, true);
    yesNo("healthy", null, true);
  }

  function markFresh() {
    staleSince = null;
    $("banner").hidden = true;
    $("banner").textContent = "";
    $("updated").textContent = "updated " + clock(new Date());
  }

  function schedule() {
    clearTimeout(timer);
    let wait = EVERY;
    if (document.hidden) wait = HIDDEN_EVERY;
    else if (failures) wait = Math.min(RETRY_MAX, EVERY * 2 ** Math.min(failures, 10));
    document.documentElement.setAttribute("data-poll-every", String(wait));
    timer = setTimeout(poll, wait);
  }

  let polls = 0;

  async function poll() {
    clearTimeout(timer);
    polls += 1;
    document.documentElement.setAttribute("data-polls", String(polls));
    if (inFlight) inFlight.abort();
    const control = new AbortController();
    inFlight = control;
    const guard = setTimeout(() => control.abort(), TIMEOUT);
    try {
      const answer = await fetch("status", {
        cache: "no-store", credentials: "same-origin", redirect: "error", signal: control.signal,
        headers: { Accept: "application/json" },
      });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      render(await answer.json());
      failures = 0;
      markFresh();
    } catch (error) {
      if (inFlight !== control && error && error.name === "AbortError") return; // overtaken by a newer poll
      failures += 1;
      markStale(error && error.name === "AbortError" ? "no answer within " + TIMEOUT / 1000 + " s" : String(error && error.message || error));
    } finally {
      clearTimeout(guard);
      if (inFlight === control) {
        inFlight = null;
        schedule();
      }
    }
  }

  document.addEventListener("visibilitychange", () => (document.hidden ? schedule() : poll()));
  document.addEventListener("DOMContentLoaded", () => {
    $("refresh").addEventListener("click", () => poll());
    poll();
  });
})();
