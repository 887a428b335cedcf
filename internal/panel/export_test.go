package panel

// MySQLConfig exposes the driver configuration a DSN opens with, for the tests of its defaults.
var MySQLConfig = mysqlConfig

// SQLiteName exposes the driver's name for a sqlite:// path, for the DSN fuzz target.
var SQLiteName = sqliteName

// SQLitePragmas are the pragmas every sqlite name carries.
const SQLitePragmas = sqlitePragmas
