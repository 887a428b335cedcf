package panel

// MySQLConfig exposes the driver configuration a DSN opens with, for the tests of its defaults.
var MySQLConfig = mysqlConfig
