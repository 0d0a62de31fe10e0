// Sort a table by a clicked header (numbers from data-v, else the text) and filter rows by <select data-filter>.
// Plain DOM code: the only behaviour the pages need, kept small so the site ships no table library.
(function () {
  function value(cell, numeric) {
    if (!cell) return numeric ? -Infinity : "";
    var raw = cell.getAttribute("data-v");
    if (numeric) { var v = parseFloat(raw === null ? cell.textContent : raw); return isNaN(v) ? -Infinity : v; }
    return (raw === null ? cell.textContent : raw).trim().toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th[data-sort]").forEach(function (th, _) {
      th.addEventListener("click", function () {
        var index = Array.prototype.indexOf.call(th.parentNode.children, th);
        var numeric = th.getAttribute("data-sort") === "num";
        var desc = !th.classList.contains("desc");  // first click: largest first
        table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(desc ? "desc" : "asc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = value(a.cells[index], numeric), y = value(b.cells[index], numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var selects = document.querySelectorAll("select[data-filter]");
  function applyFilters() {
    var wanted = {};
    selects.forEach(function (s) { if (s.value) wanted[s.getAttribute("data-filter")] = s.value; });
    document.querySelectorAll("table.sortable tbody tr").forEach(function (tr) {
      var show = Object.keys(wanted).every(function (k) { return tr.getAttribute("data-" + k) === wanted[k]; });
      tr.hidden = !show;
    });
  }
  selects.forEach(function (s) { s.addEventListener("change", applyFilters); });
})();
