"use strict";
/* Sortable tables: click (or Enter on) a header to sort by that column; again to reverse.
   Cells sort by their data-sort value when they have one (numbers), else by their text.
   Empty values sort last either way.
   Confusion matrices: the cell under the pointer is named in a tooltip (true class, predicted
   class, images, share of the true class), zeros included. Names come from the figure's data
   attributes and are written with textContent only, never as markup. */
(function () {
  function value(cell) {
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") return { empty: true };
    var number = Number(raw);
    return isNaN(number) ? { text: raw.toLowerCase() } : { number: number };
  }
  function order(a, b) {
    if (a.empty || b.empty) return (a.empty ? 1 : 0) - (b.empty ? 1 : 0);
    if (a.number !== undefined && b.number !== undefined) return a.number - b.number;
    var x = a.text !== undefined ? a.text : String(a.number);
    var y = b.text !== undefined ? b.text : String(b.number);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  function sort(table, column, header) {
    var descending = header.getAttribute("aria-sort") !== "descending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = value(r.cells[column]), b = value(s.cells[column]);
      if (a.empty || b.empty) return order(a, b);
      return descending ? order(b, a) : order(a, b);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.tabIndex = 0;
      header.addEventListener("click", function () { sort(table, column, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(table, column, header); }
      });
    });
  });
})();
(function () {
  function read(figure, name) { return JSON.parse(figure.getAttribute("data-" + name)); }
  Array.prototype.forEach.call(document.querySelectorAll("figure.cm"), function (figure) {
    var labels = read(figure, "labels"), columns = read(figure, "columns"), totals = read(figure, "totals");
    var counts = {};
    read(figure, "cells").forEach(function (cell) { counts[cell[0] + "," + cell[1]] = cell[2]; });
    var grid = figure.querySelector(".cm-grid"), tip = figure.querySelector(".cm-tip");
    var svg = figure.querySelector("svg");
    svg.addEventListener("mousemove", function (event) {
      var box = grid.getBoundingClientRect();
      var column = Math.floor((event.clientX - box.left) / box.width * columns.length);
      var row = Math.floor((event.clientY - box.top) / box.height * labels.length);
      if (column < 0 || row < 0 || column >= columns.length || row >= labels.length) { tip.hidden = true; return; }
      var count = counts[row + "," + column] || 0;
      var share = totals[row] ? (100 * count / totals[row]).toFixed(1) + "%" : "n/a";
      tip.textContent = "true: " + labels[row] + " \u2192 predicted: " + columns[column] + " \u00b7 " + count +
        " image" + (count === 1 ? "" : "s") + " (" + share + " of the class)";
      var frame = figure.getBoundingClientRect();
      tip.style.left = (event.clientX - frame.left + 14) + "px";
      tip.style.top = (event.clientY - frame.top + 14) + "px";
      tip.hidden = false;
    });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; });
  });
})();
