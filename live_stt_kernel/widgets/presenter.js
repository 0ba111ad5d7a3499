// Presentation controls of the live panel (see presenter.py): "Large text", "Full screen", "Newest",
// and captions that follow the conversation like a chat.
//
// Why a small front-end module: an ipywidgets VBox cannot keep its scroll position at the bottom, and
// the Fullscreen API only answers a click in the page (a click that went to the kernel and back is no
// user gesture any more). This module sits inside the panel (one per view of it), finds its panel in
// the page and watches the turn list with a MutationObserver: when rows are added or change, the list
// is scrolled to the bottom if it was at the bottom; a user who scrolled up stays where they are until
// they scroll back down (or press "Newest"). The rows stay ordinary ipywidgets HTML widgets, so the
// kernel still sends only the row that changed.

const SLACK = 24; // px from the bottom that still count as "at the bottom"

function button(label, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.title = title;
  return b;
}

// Keep `list` scrolled to its bottom while the user has not scrolled up; returns a cleanup.
function follow(list, onPinned) {
  let pinned = true;
  const atBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight <= SLACK;
  const toBottom = () => {
    if (pinned) list.scrollTop = list.scrollHeight;
  };
  const setPinned = (value) => {
    if (value === pinned) return;
    pinned = value;
    list.dataset.pinned = String(pinned);
    onPinned(pinned);
  };
  // content growing does not fire "scroll"; only a scroll does (the user's, or ours to the bottom)
  const onScroll = () => setPinned(atBottom());
  list.addEventListener("scroll", onScroll, { passive: true });
  const rows = new MutationObserver(toBottom);
  rows.observe(list, { childList: true, subtree: true, characterData: true });
  const size = new ResizeObserver(toBottom); // larger text, full screen: the box changes size
  size.observe(list);
  list.dataset.pinned = "true";
  toBottom();
  return {
    jump() {
      pinned = true;
      list.dataset.pinned = "true";
      onPinned(true);
      toBottom();
    },
    refresh: toBottom,
    stop() {
      list.removeEventListener("scroll", onScroll);
      rows.disconnect();
      size.disconnect();
    },
  };
}

function render({ model, el }) {
  el.classList.add("lsk-presenter");
  const large = button("Large text", "Text readable from the back of a room");
  const full = button("Full screen", "The panel alone, on the whole screen (Esc leaves)");
  const newest = button("↓ Newest", "Follow the newest turn again");
  const controls = button("Show controls", "Bring back the source, translation and coaching controls");
  newest.hidden = true;
  controls.hidden = !model.get("compact");
  el.append(newest, large, full, controls);

  let panel = null;
  let follower = null;
  let timer = null;

  const apply = () => {
    const on = model.get("large");
    large.setAttribute("aria-pressed", String(on));
    large.classList.toggle("lsk-on", on);
    controls.hidden = !model.get("compact"); // presentation from code hides the controls: a way back
    if (!panel) return;
    const grew = on && !panel.classList.contains("lsk-large");
    panel.classList.toggle("lsk-large", on);
    panel.classList.toggle("lsk-compact", model.get("compact"));
    if (follower) follower.refresh();
    if (grew) {
      // larger text makes the panel taller than the notebook's view: bring the live line (and the
      // newest turn above it) into view once, as the user asked for the captions
      const live = panel.querySelector(".lsk-live");
      if (live) requestAnimationFrame(() => live.scrollIntoView({ block: "nearest" }));
    }
  };

  const fullState = () => {
    if (!panel) return "";
    if (document.fullscreenElement === panel) return "fullscreen";
    return panel.classList.contains("lsk-fullpage") ? "fullpage" : "";
  };
  const report = () => {
    const state = fullState();
    full.textContent = state ? "Exit full screen" : "Full screen";
    full.classList.toggle("lsk-on", Boolean(state));
    if (panel) panel.dataset.fullscreen = state;
    if (model.get("fullscreen") !== state) {
      model.set("fullscreen", state);
      model.save_changes();
    }
    if (follower) follower.refresh();
  };
  // where the Fullscreen API is missing or refused (an iframe without allow="fullscreen", a policy),
  // the panel covers the browser window instead. JupyterLab's notebook is a containing block for
  // fixed elements (CSS containment), so the panel moves to <body> meanwhile, a placeholder keeping its
  // place in the notebook.
  let placeholder = null;
  const fullPage = (on) => {
    if (on && !placeholder) {
      placeholder = document.createComment("live-stt panel (full window)");
      panel.replaceWith(placeholder);
      document.body.append(panel);
    } else if (!on && placeholder) {
      if (placeholder.parentNode) placeholder.replaceWith(panel);
      else panel.remove(); // its cell went away meanwhile (output cleared): so does the panel
      placeholder = null;
    }
    panel.classList.toggle("lsk-fullpage", on);
    report();
  };
  const onKey = (event) => {
    if (event.key === "Escape" && panel && panel.classList.contains("lsk-fullpage")) fullPage(false);
  };

  full.addEventListener("click", () => {
    if (!panel) return;
    const state = fullState();
    if (state === "fullscreen") {
      document.exitFullscreen().catch(() => {});
    } else if (state === "fullpage") {
      fullPage(false);
    } else if (document.fullscreenEnabled && panel.requestFullscreen) {
      panel.requestFullscreen().catch(() => fullPage(true));
    } else {
      fullPage(true);
    }
  });
  large.addEventListener("click", () => {
    model.set("large", !model.get("large"));
    model.save_changes();
    apply();
  });
  newest.addEventListener("click", () => follower && follower.jump());
  controls.addEventListener("click", () => {
    model.set("compact", false);
    model.save_changes();
    apply();
  });

  // ipywidgets renders this view before it is put in the page: look for the panel until it is there
  const attach = () => {
    panel = el.closest(".lsk-panel");
    const list = panel && panel.querySelector(".lsk-turns");
    if (!list) {
      panel = null;
      timer = setTimeout(attach, 100);
      return;
    }
    timer = null;
    follower = follow(list, (pinned) => {
      newest.hidden = pinned;
    });
    apply();
    report();
  };
  attach();

  model.on("change:large", apply);
  model.on("change:compact", apply);
  document.addEventListener("fullscreenchange", report);
  document.addEventListener("keydown", onKey);
  return () => {
    if (placeholder) fullPage(false);
    if (timer !== null) clearTimeout(timer);
    if (follower) follower.stop();
    document.removeEventListener("fullscreenchange", report);
    document.removeEventListener("keydown", onKey);
    model.off("change:large", apply);
    model.off("change:compact", apply);
  };
}

export default { render };
