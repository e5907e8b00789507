// CSV export of what a chart or list shows (RFC 4180 quoting).

export function toCsv(columns: string[], rows: unknown[][]): string {
  const line = (cells: unknown[]) => cells.map(cell).join(',');
  return [line(columns), ...rows.map(line)].join('\r\n') + '\r\n';
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function download(name: string, csv: string): void {
  const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.click();
  URL.revokeObjectURL(url);
}
