// The features drop zone refuses a file over the server's limit before reading it (dcc.Upload max_size),
// silently; this says so in the panel's status line. The limit and the message come from the layout
// (data-max-bytes, data-too-large with {name} and {size}, data-message: the element to write to).
(function () {
  function sizeText(bytes) {
    const units = [["GiB", 1073741824], ["MiB", 1048576], ["KiB", 1024]];
    for (const [unit, scale] of units) {
      if (bytes >= scale) return Number((bytes / scale).toPrecision(3)) + " " + unit;
    }
    return bytes + " bytes";
  }
  function check(event) {
    const zone = event.target && event.target.closest && event.target.closest("[data-max-bytes]");
    if (!zone || !window.dash_clientside || !window.dash_clientside.set_props) return;
    const files = (event.dataTransfer && event.dataTransfer.files) || event.target.files || [];
    const limit = Number(zone.dataset.maxBytes);
    for (const file of files) {
      if (file.size > limit) {
        const text = zone.dataset.tooLarge.replace("{name}", file.name).replace("{size}", sizeText(file.size));
        const span = {type: "Span", namespace: "dash_html_components", props: {children: text, className: "error"}};
        window.dash_clientside.set_props(zone.dataset.message, {children: span});
        return;
      }
    }
  }
  document.addEventListener("drop", check, true);
  document.addEventListener("change", check, true);
})();
